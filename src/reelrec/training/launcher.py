"""``reelrec train --nproc N``: N local ranks of one data-parallel job, started and stopped as one.

The launcher is the command the user started; the ranks are ``python -m reelrec ... train``
children given torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ...), joined
through a TCP store the launcher hosts (torchrun's agent store, so no port is guessed). It keeps
the promises a single process keeps:

* **Checked once, before any rank.** :func:`check_nproc` bounds ``N`` by this machine (CPU cores
  this process may use, memory for that many ranks, GPUs when training on CUDA); the CLI checks
  the options, the data and ``--out`` before calling :func:`launch_local`.
* **Stopped as one.** The ranks run in their own process group, so a terminal's Ctrl+C reaches
  the launcher only; SIGTERM, SIGINT and SIGHUP of the launcher are passed on to every rank as
  SIGTERM, and the launcher returns (``128 + signal``) only after every rank has ended (killed
  after :data:`STOP_GRACE` seconds). Each rank dies with the launcher too (``PR_SET_PDEATHSIG``),
  so not even ``kill -9`` of the launcher leaves one behind. A stopped rank raises
  :class:`Stopped` (:func:`rank_guard`), which the run's atomic save cleans up after: nothing
  is written once the user stopped the command.
* **One line for a failed rank.** Each rank writes the one line it would have printed into the
  launcher's folder and exits quietly; the launcher stops the others and reports the rank that
  failed first (its message, or the signal that killed it) as one ``reelrec: error:`` line.
* **Nothing left in /tmp.** The launcher's folder (the ranks' ``TMPDIR`` too) is created by it and
  removed when the job ends; no ``torchelastic_*`` folder is made.
"""

from __future__ import annotations

import _thread
import contextlib
import glob
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from reelrec.errors import ConfigError, ReelrecError

log = logging.getLogger(__name__)

__all__ = [
    "RANK_MEMORY",
    "STOP_GRACE",
    "STOP_SIGNALS",
    "JobEnd",
    "RankFailed",
    "Stopped",
    "check_nproc",
    "launch_local",
    "max_ranks",
    "rank_guard",
    "remove_partial_writes",
]

#: the signals that stop the job (passed on to every rank as SIGTERM)
#: (the signals whose default would end the launcher and leave its ranks to run on)
STOP_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)
#: seconds the ranks get to end after a stop before they are killed
STOP_GRACE = 10.0
#: memory one CPU rank takes besides its data (the interpreter, torch, the training buffers)
RANK_MEMORY = 300 * 2**20
#: and per rating it loads (the arrays, the split's parts, their tensors)
RATING_MEMORY = 64
#: seconds a stopped rank has to end by itself before it exits at once
RANK_HARD_STOP = 8.0
#: the hidden option that tells a rank the launcher's folder (where it reports how it ended)
RANK_DIR_OPTION = "--rank-dir"
#: seconds between two looks at the ranks
POLL = 0.05


class RankFailed(ReelrecError):
    """A rank of a local job ended with an error or was killed; the others were stopped."""


class Stopped(BaseException):
    """Raised in a rank by a stop signal (a ``BaseException``: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class JobEnd:
    """How a local job ended: the command's exit status and, when stopped, one line to print."""

    status: int
    message: str | None = None


# ---------------------------------------------------------------------- the bound on N
def max_ranks(device: str = "auto", n_ratings: int = 0) -> tuple[int, str]:
    """The most local ranks that make sense here, and what sets that bound (for the message):
    the GPUs when the job trains on CUDA, else the CPU cores this process may run on
    (``os.sched_getaffinity``) and the memory available for ranks of :data:`RANK_MEMORY` and
    :data:`RATING_MEMORY` per rating (``n_ratings``: the data each rank loads) each."""
    import torch

    from reelrec.models.registry import available_memory
    from reelrec.threads import available_cores

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        gpus = torch.cuda.device_count()
        return gpus, f"{gpus} CUDA GPU{'s' if gpus != 1 else ''}"
    cores = available_cores()
    per_rank = RANK_MEMORY + RATING_MEMORY * max(0, n_ratings)
    free = available_memory()
    if free // per_rank < cores:
        gib, mib = free / 2**30, per_rank / 2**20
        return max(1, free // per_rank), f"{gib:.1f} GiB of memory available, about {mib:,.0f} MiB per rank"
    return cores, f"{cores} CPU core{'s' if cores != 1 else ''} available to this process"


def check_nproc(nproc: int, device: str = "auto", n_ratings: int = 0) -> None:
    """Refuse, in one line, a rank count below 1 or above what this machine runs (:func:`max_ranks`;
    check ``device`` itself first: ``reelrec.training.trainer.resolve_device``)."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1 (got {nproc})")
    limit, why = max_ranks(device, n_ratings)
    if nproc > limit:
        if limit < 2:
            raise ConfigError(f"--nproc {nproc}: this machine runs one process ({why}); leave --nproc out")
        raise ConfigError(
            f"--nproc {nproc} is more than this machine runs ({why}); use --nproc {limit} or fewer"
        )


# ---------------------------------------------------------------------- inside a rank
def rank_guard(rank: int, world: int, report_dir: str | None, *, debug: bool = False) -> Any:
    """The context a rank's work runs in: a stop signal raises :class:`Stopped` (once), which ends
    the rank quietly with ``128 + signal``; any other error is written, as the one line the CLI
    would print, to ``report_dir`` for the launcher, and the rank exits 1 without printing
    (``report_dir`` ``None``, as under a torchrun of the user's, or ``debug``: raised as it is).
    Yields the rank's stop state."""
    return _guard(rank, world, report_dir, debug)


class _StopState:
    """A rank's stop: the first signal raises :class:`Stopped` in the main thread; a raise that
    was swallowed (inside a C callback, such as numba's compiler's, Python only reports it as
    unraisable) is delivered again; past :data:`RANK_HARD_STOP` seconds the rank exits at once
    (a stop the raise could not reach, with no launcher left to kill the rank)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.swallowed = False
        self.previous_hook = sys.unraisablehook
        self.hard_stop: threading.Timer | None = None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            self.hard_stop = _daemon_timer(RANK_HARD_STOP, os._exit, 128 + signum)
        elif not self.swallowed:
            return  # once: a second signal must not break the clean-up of the first
        self.swallowed = False
        raise Stopped(self.signum)

    def on_unraisable(self, info: Any) -> None:
        if isinstance(info.exc_value, Stopped):
            self.swallowed = True  # raise it again soon, from another thread: not inside this hook
            _daemon_timer(0.05, _thread.interrupt_main, info.exc_value.signum)
        else:
            self.previous_hook(info)

    def cancel(self) -> None:
        """Call off the hard stop (a rank that goes on: tests)."""
        if self.hard_stop is not None:
            self.hard_stop.cancel()


def _daemon_timer(seconds: float, call: Callable[..., Any], *args: Any) -> threading.Timer:
    timer = threading.Timer(seconds, call, args)
    timer.daemon = True
    timer.start()
    return timer


@contextlib.contextmanager
def _guard(rank: int, world: int, report_dir: str | None, debug: bool) -> Iterator[_StopState]:
    parent = os.getppid()
    stop = _StopState()
    previous = {s: signal.signal(s, stop.on_signal) for s in STOP_SIGNALS}
    sys.unraisablehook = stop.on_unraisable
    try:
        yield stop
    except BaseException as exc:
        if isinstance(exc, SystemExit) and not exc.code:
            raise
        if stop.signum is not None:  # whatever the stop broke (a collective with a stopped peer ...)
            if report_dir is not None and os.getppid() != parent and rank == 0:
                shutil.rmtree(report_dir, ignore_errors=True)  # the launcher is gone: its folder too
            raise SystemExit(128 + stop.signum) from None
        if report_dir is None or debug:
            raise
        _report(Path(report_dir), rank, exc)
        raise SystemExit(1) from None
    finally:
        sys.unraisablehook = stop.previous_hook
        for s, handler in previous.items():
            signal.signal(s, handler)


def _report(folder: Path, rank: int, exc: BaseException) -> None:
    """Write how rank ``rank`` failed (the CLI's line, and whether a peer's end caused it)."""
    if isinstance(exc, ReelrecError | OSError):
        line = f"error: {exc}"
    elif isinstance(exc, MemoryError):
        line = "error: out of memory; use a smaller model, batch or dataset"
    elif isinstance(exc, KeyboardInterrupt):
        line = "interrupted"
    else:
        line = f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)"
    record = {"line": " ".join(line.split()), "peer": _from_collective(exc)}
    with contextlib.suppress(OSError):
        (folder / f"rank-{rank}.json").write_text(json.dumps(record), encoding="utf-8")


def _from_collective(exc: BaseException) -> bool:
    """Whether ``exc`` came out of torch.distributed (a peer's end breaks every collective)."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    marker = os.sep + os.path.join("torch", "distributed") + os.sep
    return any(marker in frame.filename for frame in traceback.extract_tb(exc.__traceback__))


# ---------------------------------------------------------------------- the launcher
def rank_argv(argv: list[str], report_dir: str) -> list[str]:
    """A rank's command line: ``argv`` without ``--nproc N``/``--nproc=N``, with the launcher's folder."""
    out: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--nproc":
            skip = True
            continue
        if token.startswith("--nproc="):
            continue
        out.append(token)
    return [*out, f"{RANK_DIR_OPTION}={report_dir}"]


def launch_local(
    argv: list[str],
    nproc: int,
    *,
    out: str | os.PathLike[str] | None = None,
    debug: bool = False,
    grace: float = STOP_GRACE,
) -> JobEnd:
    """``reelrec train --nproc N``: the same command line (``argv``) as ``nproc`` local ranks;
    returns when every rank has ended. Raises :class:`RankFailed` (one line) when a rank fails;
    a stop signal ends the job with ``128 + signal`` (see the module). A job that did not end
    well leaves no half-written copy of the run ``out`` (:func:`remove_partial_writes`)."""
    folder = tempfile.mkdtemp(prefix="reelrec-nproc-")
    job = _Job(rank_argv(argv, folder), nproc, Path(folder), debug=debug, grace=grace)
    ended = None
    try:
        ended = job.run()
        return ended
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if out is not None and (ended is None or ended.status != 0):
            remove_partial_writes(Path(out), [p.pid for p in job.procs])


def remove_partial_writes(out: Path, pids: list[int]) -> list[Path]:
    """Undo what the processes ``pids`` (the job's ranks, all ended) left of an unfinished save of
    run ``out``, by the names the atomic save gives (``.NAME.PID.RANDOM.KIND``), and nothing else:
    a copy being written (``tmp``) is removed; a replaced run set aside (``old``) is put back when
    the swap was cut before the new run took its place, else removed as the swap would have.
    Returns what was removed or put back."""
    done = []
    for entry in sorted(out.parent.glob(f".{glob.escape(out.name)}.*")):
        pid, _, rest = entry.name[len(out.name) + 2 :].partition(".")
        kind = re.fullmatch(r"[0-9a-f]{8}\.(tmp|old)", rest)
        if not (pid.isdigit() and int(pid) in pids and kind):
            continue
        if kind[1] == "old" and not out.exists() and not out.is_symlink():
            os.replace(entry, out)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        done.append(entry)
    return done


def _die_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGTERM when ``parent`` dies (Linux), or does not start
    when it has died already."""

    try:  # looked up here: the child between fork and exec must not import
        import ctypes

        prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        prctl = None

    def setup() -> None:
        if prctl is not None:
            prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(128 + int(signal.SIGTERM))

    return setup


class _Job:
    """The ranks of one local job, and how it ended."""

    def __init__(self, argv: list[str], nproc: int, folder: Path, *, debug: bool, grace: float) -> None:
        self.argv, self.nproc, self.folder, self.debug, self.grace = argv, nproc, folder, debug, grace
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stop_signal: int | None = None
        self.deadline: float | None = None  # when the stopped ranks are killed
        self.failed: list[tuple[int, int]] = []  # (rank, status) of ranks that ended badly unasked

    def run(self) -> JobEnd:
        from torch.distributed import TCPStore

        store = TCPStore("127.0.0.1", 0, self.nproc, is_master=True, wait_for_workers=False)
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, self._on_suspend)
        previous[signal.SIGCONT] = signal.signal(signal.SIGCONT, self._on_resume)
        try:
            self._start(store.port)
            self._wait()
        finally:
            self._kill()  # only ranks still running (an error in the launcher itself)
            for s, handler in previous.items():
                signal.signal(s, handler)
            del store
        return self._end()

    def _start(self, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHELASTIC_")}
        env.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            WORLD_SIZE=str(self.nproc),
            LOCAL_WORLD_SIZE=str(self.nproc),
            GROUP_RANK="0",
            TORCHELASTIC_USE_AGENT_STORE="True",
            TMPDIR=str(self.folder),
        )
        cmd = [sys.executable, "-m", "reelrec", *self.argv]
        log.info("starting %d ranks of: %s", self.nproc, " ".join(cmd))
        for rank in range(self.nproc):
            if self.stop_signal is not None:
                break
            quiet = rank > 0 and not self.debug  # rank 0 prints; the others' output is not shown
            err = (self.folder / f"rank-{rank}.log").open("wb") if quiet else None
            try:
                proc = subprocess.Popen(
                    cmd,
                    env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL if quiet else None,
                    stderr=err,
                    process_group=self.procs[0].pid if self.procs else 0,
                    preexec_fn=_die_with(os.getpid()),
                )
            finally:
                if err is not None:
                    err.close()
            self.procs.append(proc)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self._terminate()
        else:  # asked twice: do not wait
            self._kill()

    def _terminate(self) -> None:
        """SIGTERM to every rank still running; killed if not ended within the grace time."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grace
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                    proc.send_signal(signal.SIGCONT)  # a suspended rank must run to end

    def _on_suspend(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl+Z: suspend the ranks (in their own process group, the terminal's does not reach
        them), then the launcher; both resume together on ``fg``, ``bg`` or SIGCONT."""
        self._signal_group(signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)

    def _on_resume(self, signum: int, frame: FrameType | None) -> None:
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, sig: int) -> None:
        """``sig`` to the ranks' process group while one of them still runs (its id is still theirs)."""
        if any(p.poll() is None for p in self.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.procs[0].pid, sig)

    def _kill(self) -> None:
        """SIGKILL to the ranks' process group while one of them still runs (its id is still theirs)."""
        running = [p for p in self.procs if p.poll() is None]
        self._signal_group(signal.SIGKILL)
        for proc in running:
            proc.wait()

    def _wait(self) -> None:
        while True:
            if not self.stop_signal and not self.failed:
                self.failed = [(r, p.returncode) for r, p in enumerate(self.procs) if p.poll()]
                if self.failed:
                    self._terminate()
            if all(p.poll() is not None for p in self.procs):
                return
            if self.deadline is not None and time.monotonic() > self.deadline:
                log.warning("ranks still running %.0f s after the stop: killed", self.grace)
                self._kill()
            time.sleep(POLL)

    def _end(self) -> JobEnd:
        if self.failed:
            raise RankFailed(self._describe(*self._first_cause()))
        if self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            saved = self.procs and self.procs[0].returncode == 0
            told = "the run was saved before the stop" if saved else "nothing was saved"
            text = f"interrupted by {name}: {self.nproc} ranks stopped, {told}"
            return JobEnd(128 + self.stop_signal, text)
        return JobEnd(0)

    def _first_cause(self) -> tuple[int, int]:
        """The failure that ended the job: an error of its own before one a peer's end caused."""
        own = [(r, s) for r, s in self.failed if not self._read(r).get("peer")]
        return (own or self.failed)[0]

    def _read(self, rank: int) -> dict[str, Any]:
        try:
            return dict(json.loads((self.folder / f"rank-{rank}.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return {}

    def _describe(self, rank: int, status: int) -> str:
        who = f"rank {rank} of {self.nproc}"
        line = self._read(rank).get("line")
        if line:
            return f"{who} failed: {line.removeprefix('error: ')}"
        if status < 0:
            return f"{who} was killed by {_signal_name(-status)}"
        if status > 128 and _signal_name(status - 128, "") in {s.name for s in STOP_SIGNALS}:
            return f"{who} was stopped by {_signal_name(status - 128)}"
        return f"{who} exited with status {status}"


def _signal_name(signum: int, default: str | None = None) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}" if default is None else default
