"""The one write path of reelrec: atomic files, guarded output folders, run-directory swaps.

Rules every output of the product follows (run directories, ``predict --out``, experiment / tune
outputs, plots, downloads):

- **Write, then rename.** A file is written to a temporary sibling
  (``.NAME.PID.RANDOM.tmp``) and renamed over its destination with :func:`os.replace`, so a
  reader sees the old file or the new one, never half of one. A run directory is built in a
  temporary sibling folder and swapped in the same way.
- **Never delete what reelrec did not create.** A run directory is replaced only when it *is* a
  reelrec run (it carries ``manifest.json``) and holds nothing but the files its manifest lists
  (plus the ``plots/`` folder ``reelrec plot`` writes there). An output folder is written into only
  when it is new, empty, marked as reelrec's (``.reelrec-output``) or holds only the names the
  command itself writes. Anything else is refused with one line and left untouched.
- **Never a directory where a file goes**, and never a file over one of the command's inputs.
- **Clean leftovers.** Temporary names carry the writing process's id; a later write to the same
  place removes the leftovers of processes that no longer run (a killed save or download).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from reelrec.errors import OutputError

__all__ = [
    "OUTPUT_MARK",
    "RUN_MANIFEST",
    "OutputError",
    "atomic_path",
    "atomic_write_text",
    "check_file_target",
    "check_run_target",
    "clean_leftovers",
    "prepare_output_dir",
    "swap_in_dir",
    "temp_dir",
    "temp_name",
]

#: the file that makes a folder a reelrec run (written last by ``save_run``)
RUN_MANIFEST = "manifest.json"
#: the marker of a folder reelrec writes several outputs into (experiment, tune, plot)
OUTPUT_MARK = ".reelrec-output"
#: entries a run directory may hold besides its manifest's files: ``reelrec plot`` output
_RUN_EXTRAS = {"plots": ("learning_curves.png", "embeddings_pca.png", "embeddings_tsne.png", OUTPUT_MARK)}
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.(?P<kind>[a-z.]+)$")


# ---------------------------------------------------------------------- temporary names
def temp_name(name: str, kind: str = "tmp") -> str:
    """A hidden temporary name for ``name``: ``.NAME.PID.RANDOM.KIND`` (``kind`` in ``[a-z.]``)."""
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's live process
    except OSError:
        return False
    return True


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def clean_leftovers(folder: str | os.PathLike[str], name: str, extra: Iterable[str] = ()) -> list[Path]:
    """Remove temporary leftovers of ``name`` in ``folder`` whose writer no longer runs.

    Only names reelrec itself makes are touched: ``.NAME.PID.RANDOM.KIND`` (see :func:`temp_name`)
    with a dead ``PID``, and the glob patterns in ``extra`` (older reelrec names). Returns what
    was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    patterns = list(extra)
    for entry in entries:
        match = _TEMP.match(entry.name)
        stale = (match is not None and match["name"] == name and not _alive(int(match["pid"]))) or any(
            fnmatch.fnmatchcase(entry.name, p) for p in patterns
        )
        if stale:
            _remove(entry)
            removed.append(entry)
    return removed


# ---------------------------------------------------------------------- single files
def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_file_target(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    inputs: Iterable[str | os.PathLike[str]] = (),
    flag: str = "--out",
) -> Path:
    """Refuse a file destination that is a directory, one of ``inputs``, a file inside a run
    directory, or (without ``overwrite``) an existing file; return it as a :class:`~pathlib.Path`."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{flag} {target} is a directory; give a file name inside it")
    for source in inputs:
        if _same_file(target, Path(source)):
            raise OutputError(f"{flag} {target} is one of the command's inputs; write to another file")
    if (target.parent / RUN_MANIFEST).is_file():
        raise OutputError(f"{flag} {target} is inside a reelrec run directory; write it somewhere else")
    if target.exists() and not overwrite:
        raise OutputError(f"{flag} {target} already exists; choose another name or pass --overwrite")
    if target.parent.exists() and not target.parent.is_dir():
        raise OutputError(f"{flag} {target}: {target.parent} is not a directory")
    return target


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = (), overwrite: bool = True
) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; rename it over ``path`` on success and
    remove it on any failure (including a failed check before anything is written)."""
    target = check_file_target(path, overwrite=overwrite, inputs=inputs)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {target} ({exc.strerror or exc})") from None
    clean_leftovers(target.parent, target.name)
    tmp = target.with_name(temp_name(target.name))
    try:
        yield tmp
        if target.is_dir():  # appeared meanwhile
            raise OutputError(f"{target} is a directory; give a file name inside it")
        os.replace(tmp, target)
    except OSError as exc:  # one line naming the destination, not the temporary file
        raise OutputError(f"cannot write {target} ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding=encoding, newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


# ---------------------------------------------------------------------- run directories
def _foreign_entries(root: Path, manifest_files: Iterable[str]) -> list[str]:
    """Entries of run directory ``root`` that its manifest does not list and reelrec did not write."""
    allowed = {RUN_MANIFEST, *manifest_files}
    foreign = []
    for entry in sorted(root.iterdir()):
        if entry.name in allowed and entry.is_file() and not entry.is_symlink():
            continue
        extras = _RUN_EXTRAS.get(entry.name)
        if extras is not None and entry.is_dir() and not entry.is_symlink():
            inner = [
                p
                for p in entry.iterdir()
                if (p.name not in extras and not _TEMP.match(p.name)) or not p.is_file() or p.is_symlink()
            ]
            if not inner:
                continue
            foreign.append(f"{entry.name}/{inner[0].name}")
            continue
        foreign.append(entry.name)
    return foreign


def check_run_target(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse a run-directory destination that would destroy something; call it before a long
    training and again right before the swap.

    A new or empty folder is fine. A folder with files is replaced only with ``overwrite``, only
    when it is a reelrec run (it has ``manifest.json``), and only when it holds nothing but the
    files the manifest lists and reelrec's own ``plots/``; anything else is refused with one line
    naming what is in the way.
    """
    target = Path(path)
    if target.is_symlink():
        raise OutputError(f"{target} is a symbolic link; give the run directory itself")
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target} exists and is not a directory; choose another --out")
    if not target.exists():
        if target.parent.exists() and not target.parent.is_dir():
            raise OutputError(f"{target}: {target.parent} is not a directory")
        return target
    try:
        entries = list(target.iterdir())
    except OSError as exc:
        raise OutputError(f"{target} cannot be read ({exc.strerror or exc})") from None
    if not entries:
        return target
    if not overwrite:
        raise OutputError(f"{target} already holds files; choose another --out or pass --overwrite")
    manifest = target / RUN_MANIFEST
    if not manifest.is_file():
        raise OutputError(
            f"{target} is not a reelrec run (no {RUN_MANIFEST}); --overwrite only replaces a run, "
            "so nothing was deleted: choose another --out"
        )
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        names = [str(n) for n in listed]
    except (OSError, ValueError, KeyError, TypeError):
        raise OutputError(
            f"{target}/{RUN_MANIFEST} is unreadable, so {target} is not a run reelrec can replace; "
            "choose another --out"
        ) from None
    foreign = _foreign_entries(target, names)
    if foreign:
        raise OutputError(
            f"{target} holds {foreign[0]!r}, which is not part of the run; --overwrite deletes nothing "
            "it did not write: move it away or choose another --out"
        )
    return target


def temp_dir(target: Path) -> Path:
    """A new temporary sibling folder of ``target`` (cleaning leftovers of dead writers first)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target.parent, target.name)
    tmp = target.with_name(temp_name(target.name))
    tmp.mkdir()
    return tmp


def swap_in_dir(tmp: Path, target: Path, overwrite: bool = False) -> Path:
    """Move the finished folder ``tmp`` to ``target``: a rename when ``target`` is new or empty;
    otherwise (``overwrite``, and only over a replaceable run, checked again now) the old run is
    renamed aside, the new one renamed in, and the old one deleted."""
    check_run_target(target, overwrite)
    if target.exists() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.replace(tmp, target)
        return target
    old = target.with_name(temp_name(target.name, "old"))
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    _remove(old)
    return target


# ---------------------------------------------------------------------- output folders
def prepare_output_dir(
    path: str | os.PathLike[str],
    *,
    command: str,
    owned: Iterable[str] = (),
    overwrite: bool = True,
    flag: str = "--out",
) -> Path:
    """Make ``path`` ready for ``command`` to write its outputs into, and mark it as reelrec's.

    A new or empty folder is created and marked. A folder already marked (``.reelrec-output``),
    or holding only names that match the ``owned`` globs (what ``command`` writes), is reused
    when ``overwrite``; without it, it is refused. A folder holding anything else is refused:
    reelrec never writes over files it did not create.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder} exists and is not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            raise OutputError(f"{flag} {folder}: a parent is not a directory") from None
        raise
    entries = [e.name for e in folder.iterdir()]
    marked = OUTPUT_MARK in entries
    patterns = list(owned)
    foreign = [
        n for n in entries if n != OUTPUT_MARK and not any(fnmatch.fnmatchcase(n, p) for p in patterns)
    ]
    if entries and not marked and foreign:
        raise OutputError(
            f"{flag} {folder} already holds files reelrec did not write ({foreign[0]!r}); "
            "choose a new or empty folder"
        )
    if [n for n in entries if n != OUTPUT_MARK] and not overwrite:
        raise OutputError(f"{flag} {folder} already holds files; choose another {flag} or pass --overwrite")
    if not marked:
        atomic_write_text(folder / OUTPUT_MARK, json.dumps({"written_by": f"reelrec {command}"}) + "\n")
    return folder
