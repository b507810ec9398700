"""MovieLens registry, offline download (synthetic zips) and the three native formats."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import platformdirs
import pytest

from conftest import skip_or_fail
from reelrec.data import movielens as ml
from reelrec.errors import DataError, DownloadError

# ---------------------------------------------------------------------------- synthetic files
U_DATA = "1\t10\t5\t881250949\n2\t20\t3\t891717742\n1\t20\t4\t878887116\n3\t30\t1\t880606923\n"
GENRES = list(ml.ML100K_GENRES)


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in GENRES)


def write_ml100k(folder: Path) -> Path:
    """A tiny ml-100k folder: 3 users, 3 movies, a Latin-1 title, a title without a year."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(U_DATA)
    childrens = _flags("Children's", "Sci-Fi")
    items = (
        f"10|Café Society (1995)|01-Jan-1995||http://x|{_flags('Comedy', 'Drama')}\n"
        f"20|unknown|||http://y|{_flags('unknown')}\n"
        f"30|Land Before Time III (V)|01-Jan-1997||http://z|{childrens}\n"
    )
    (folder / "u.item").write_bytes(items.encode("latin-1"))
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\n")
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n")
    (folder / "u1.base").write_text("".join(U_DATA.splitlines(keepends=True)[:3]))
    (folder / "u1.test").write_text(U_DATA.splitlines(keepends=True)[3])
    return folder


def write_ml1m(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n2::661::3::978302109\n1::914::3::978301968\n")
    movies = (
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "914::Misérables, Les (1995)::Drama|Musical\n"
        "2::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
    )
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def write_ml10m(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text(
        "1::122::5::838985046\n1::185::4.5::838983525\n2::122::0.5::838983392\n"
    )
    movies = "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n"
    (folder / "movies.dat").write_bytes(movies.encode("utf-8"))
    (folder / "tags.dat").write_text("1::122::sci-fi: classic::1188263867\n2::185::Amélie-like::1188263880\n")
    return folder


def write_csv(folder: Path) -> Path:
    """ml-latest style: CRLF, quoted titles with commas, odd years, "(no genres listed)"."""
    folder.mkdir(parents=True, exist_ok=True)
    ratings = "userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n1,11,0.5,964981247\r\n7,99,3.5,1\r\n"
    (folder / "ratings.csv").write_bytes(ratings.encode())
    movies = (
        "movieId,title,genres\r\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\r\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\r\n'
        "99,Death Note: Desu nôto (2006–2007),(no genres listed)\r\n"
        '100,"Babylon 5",Sci-Fi\r\n'
        "101,Runaway Brain (1995) ,Animation\r\n"
    )
    (folder / "movies.csv").write_bytes(movies.encode("utf-8"))
    tags = 'userId,movieId,tag,timestamp\r\n2,1,funny,1445714994\r\n2,11,"Highly, quotable",1445714996\r\n'
    (folder / "tags.csv").write_bytes(tags.encode())
    return folder


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty data home."""
    path = tmp_path / "home"
    path.mkdir()
    return path


# ---------------------------------------------------------------------------- registry
def test_registry_entries() -> None:
    assert list(ml.DATASETS) == [
        "ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest",
    ]  # fmt: skip
    for name, spec in ml.DATASETS.items():
        assert spec.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        if spec.checksum is None:
            assert spec.checksum_url == spec.url + ".md5"
        else:
            assert len(spec.checksum) == {"sha256": 64, "md5": 32}[spec.algorithm]
    assert ml.DATASETS["ml-10m"].folder == "ml-10M100K"
    assert ml.DATASETS["ml-10m"].algorithm == "md5"
    assert ml.DATASETS["ml-32m"].checksum == "d472be332d4daa821edc399621853b57"
    assert ml.DATASETS["ml-100k"].size == 4924029
    assert ml.DATASETS["ml-latest"].checksum is None


def test_the_registry_is_grouplens_and_movielens_reexports_it() -> None:
    """The registry and download live in data/grouplens.py (no pandas); every name the
    loaders' module exported before is still there, the same object."""
    from reelrec.data import grouplens

    for name in grouplens.__all__:
        assert getattr(ml, name) is getattr(grouplens, name), name
    assert set(grouplens.__all__) <= set(ml.__all__)


def test_data_home_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REELREC_DATA_HOME", str(tmp_path / "env"))
    monkeypatch.setattr("reelrec.options._current", None)  # the environment is read once, at first use
    assert ml.data_home(tmp_path / "arg") == tmp_path / "arg"
    assert ml.data_home() == tmp_path / "env"
    monkeypatch.delenv("REELREC_DATA_HOME")
    monkeypatch.setattr("reelrec.options._current", None)
    assert ml.data_home() == Path(platformdirs.user_cache_dir("reelrec"))


def test_is_present_and_list(home: Path) -> None:
    assert not ml.is_present("ml-100k", home)
    write_ml100k(home / "ml-100k")
    write_ml10m(home / "ml-10M100K")
    assert ml.is_present("ml-100k", home)
    assert ml.is_present("ml-10m", home)
    (home / "ml-1m").mkdir()
    (home / "ml-1m" / "movies.dat").write_text("")
    assert not ml.is_present("ml-1m", home)
    rows = {r["name"]: r for r in ml.list_datasets(home)}
    assert set(rows) == set(ml.DATASETS)
    assert rows["ml-100k"]["present"] is True
    assert rows["ml-1m"]["present"] is False
    assert rows["ml-10m"]["path"] == str(home / "ml-10M100K")
    assert rows["ml-25m"]["size"] == 261978986


def test_unknown_name_is_one_line_error(home: Path) -> None:
    with pytest.raises(DataError, match="unknown MovieLens dataset 'ml-7m'") as err:
        ml.load_movielens("ml-7m", data_home=home)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="unknown"):
        ml.is_present("nope")


def test_missing_dataset_says_how_to_get_it(home: Path) -> None:
    with pytest.raises(DataError) as err:
        ml.load_movielens("ml-1m", data_home=home)
    msg = str(err.value)
    assert "reelrec download ml-1m" in msg
    assert "REELREC_DATA_HOME" in msg
    assert str(home / "ml-1m" / "ratings.dat") in msg
    assert "\n" not in msg


# ---------------------------------------------------------------------------- formats
def test_load_ml100k(home: Path) -> None:
    folder = write_ml100k(home / "ml-100k")
    ds = ml.load_movielens("ml-100k", data_home=home)
    assert ds.name == "ml-100k"
    assert ds.source == {"kind": "movielens", "name": "ml-100k", "path": str(folder.resolve())}
    frame = ds.to_frame()
    assert frame["user"].tolist() == [1, 2, 1, 3]
    assert frame["item"].tolist() == [10, 20, 20, 30]
    assert frame["rating"].tolist() == [5.0, 3.0, 4.0, 1.0]
    assert ds.timestamp.tolist() == [881250949, 891717742, 878887116, 880606923]
    info = ds.item_info
    assert info.index.tolist() == [10, 20, 30]
    assert info["title"].tolist() == ["Café Society", "unknown", "Land Before Time III (V)"]
    assert str(info["year"].dtype) == "Int64"
    assert info.loc[10, "year"] == 1995
    assert pd.isna(info.loc[20, "year"])
    assert info.loc[30, "year"] == 1997  # from the release date: the title has no year
    assert info["genres"].tolist() == ["Comedy|Drama", "unknown", "Children's|Sci-Fi"]
    users = ds.user_info
    assert users.index.tolist() == [1, 2, 3]
    assert users["age"].tolist() == [24, 53, 23]
    assert users["age"].dtype == np.int64
    assert users["gender"].tolist() == ["M", "F", "M"]
    assert users["occupation"].tolist() == ["technician", "other", "writer"]
    assert users["zip"].tolist() == ["85711", "94043", "T8H1N"]


def test_ml100k_genres_without_u_genre(home: Path) -> None:
    folder = write_ml100k(home / "ml-100k")
    (folder / "u.genre").unlink()
    assert ml.load_items(folder).loc[10, "genres"] == "Comedy|Drama"


def test_folder_without_user_file(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "copy")
    (folder / "u.user").unlink()
    ds = ml.load_movielens(folder)
    assert ds.name == "copy"
    assert ds.user_info is None
    assert len(ds) == 4


def test_ml100k_split(home: Path) -> None:
    folder = write_ml100k(home / "ml-100k")
    base, test = ml.load_ml100k_split("u1", data_home=home)
    assert list(base.columns) == ["user", "item", "rating", "timestamp"]
    assert base["item"].tolist() == [10, 20, 20]
    assert test.to_numpy().tolist() == [[3, 30, 1, 880606923]]
    base2, _ = ml.load_ml100k_split("u1", path=folder)
    pd.testing.assert_frame_equal(base, base2)
    with pytest.raises(DataError, match="unknown ml-100k split"):
        ml.load_ml100k_split("u9", data_home=home)
    with pytest.raises(DataError, match=r"u2\.base is missing"):
        ml.load_ml100k_split("u2", data_home=home)


def test_load_ml1m_dat(home: Path) -> None:
    write_ml1m(home / "ml-1m")
    ds = ml.load_movielens("ml-1m", data_home=home)
    frame = ds.to_frame()
    assert frame["user"].tolist() == [1, 2, 1]
    assert frame["item"].tolist() == [1193, 661, 914]
    assert ds.timestamp.tolist() == [978300760, 978302109, 978301968]
    info = ds.item_info
    assert info.loc[914, "title"] == "Misérables, Les"
    assert info.loc[2, "title"] == "Star Wars: Episode IV - A New Hope"
    assert info.loc[2, "year"] == 1977
    assert info.loc[661, "genres"] == "Animation|Children's|Musical"
    users = ds.user_info
    assert users.loc[1].tolist() == [1, "F", "K-12 student", "48067"]
    assert users.loc[2].tolist() == [56, "M", "self-employed", "70072"]


def test_load_ml10m_by_path_and_tags(tmp_path: Path) -> None:
    folder = write_ml10m(tmp_path / "ml-10M100K")
    ds = ml.load_movielens(folder)
    assert ds.name == "ml-10m"  # the folder name maps back to the registry name
    assert ds.rating.tolist() == [5.0, 4.5, 0.5]
    assert ds.user_info is None
    assert ds.item_info.loc[185, "title"] == "Net, The"
    tags = ml.load_tags(folder)
    assert list(tags.columns) == ["user", "item", "tag", "timestamp"]
    assert tags["tag"].tolist() == ["sci-fi: classic", "Amélie-like"]
    assert tags["timestamp"].tolist() == [1188263867, 1188263880]
    with pytest.raises(DataError, match="has no users file"):
        ml.load_users(folder)


def test_load_csv_format(home: Path) -> None:
    write_csv(home / "ml-latest-small")
    ds = ml.load_movielens("ml-latest-small", data_home=home)
    frame = ds.to_frame()
    assert frame["user"].tolist() == [1, 1, 7]
    assert frame["item"].tolist() == [1, 11, 99]
    assert frame["rating"].tolist() == [4.0, 0.5, 3.5]
    assert ds.timestamp.tolist() == [964982703, 964981247, 1]
    info = ds.item_info
    assert info["title"].tolist() == [
        "Toy Story", "American President, The", "Death Note: Desu nôto", "Babylon 5", "Runaway Brain",
    ]  # fmt: skip
    assert info["year"].tolist()[:3] == [1995, 1995, 2006]
    assert pd.isna(info.loc[100, "year"])
    assert info.loc[101, "year"] == 1995
    assert info.loc[99, "genres"] == ""
    assert info.loc[1, "genres"] == "Adventure|Animation|Children|Comedy|Fantasy"
    tags = ml.load_tags("ml-latest-small", data_home=home)
    assert tags["tag"].tolist() == ["funny", "Highly, quotable"]
    with pytest.raises(DataError, match="ml-100k has no tags file"):
        ml.load_tags(write_ml100k(home / "ml-100k"))


def test_gzipped_ratings_file_is_accepted(home: Path) -> None:
    import gzip

    folder = write_ml1m(home / "ml-1m")
    raw = (folder / "ratings.dat").read_bytes()
    (folder / "ratings.dat").unlink()
    (folder / "ratings.dat.gz").write_bytes(gzip.compress(raw))
    assert ml.is_present("ml-1m", home)
    assert ml.load_movielens("ml-1m", data_home=home).to_frame()["item"].tolist() == [1193, 661, 914]


def test_malformed_ratings_file(home: Path) -> None:
    folder = write_ml1m(home / "ml-1m")
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n2::x::3::978302109\n")
    with pytest.raises(DataError, match=r"ratings\.dat: cannot parse") as err:
        ml.load_movielens("ml-1m", data_home=home)
    assert "\n" not in str(err.value)


def test_not_a_movielens_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a MovieLens folder"):
        ml.load_movielens(tmp_path)


# ---------------------------------------------------------------------------- download (offline)
def make_zip(path: Path, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A synthetic ml-100k-layout zip named ``ml-test.zip`` with folder ``ml-test/``."""
    src = write_ml100k(tmp_path / "src")
    files = {f"ml-test/{p.name}": p.read_bytes() for p in sorted(src.iterdir())}
    path = tmp_path / "ml-test.zip"
    make_zip(path, files)
    return path


def register(monkeypatch: pytest.MonkeyPatch, zip_path: Path, **changes: object) -> ml.MovieLensSpec:
    data = zip_path.read_bytes()
    spec = ml.MovieLensSpec(
        name="ml-test",
        url=zip_path.as_uri(),
        folder="ml-test",
        layout=ml.ML100K_LAYOUT,
        checksum=hashlib.sha256(data).hexdigest(),
        algorithm="sha256",
        size=len(data),
        description="synthetic",
    )
    spec = replace(spec, **changes)
    monkeypatch.setitem(ml.DATASETS, "ml-test", spec)
    return spec


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir()) if home.exists() else []


def test_download_verifies_and_extracts(monkeypatch: pytest.MonkeyPatch, archive: Path, home: Path) -> None:
    register(monkeypatch, archive)
    target = ml.download("ml-test", home, progress=False)  # real urllib path via a file:// URL
    assert target == home / "ml-test"
    assert leftovers(home) == ["ml-test"]  # no .part file, no extraction folder
    assert ml.is_present("ml-test", home)
    assert ml.load_movielens("ml-test", data_home=home).item_info.loc[10, "title"] == "Café Society"

    def refuse(url: str) -> None:
        raise AssertionError("must not download a dataset that is present")

    assert ml.download("ml-test", home, progress=False, opener=refuse) == target


def test_download_force_replaces(monkeypatch: pytest.MonkeyPatch, archive: Path, home: Path) -> None:
    register(monkeypatch, archive)
    stale = home / "ml-test"
    stale.mkdir()
    (stale / "u.data").write_text("1\t1\t5\t1\n")  # a half-copied dataset file
    (stale / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="exists but is incomplete"):
        ml.download("ml-test", home, progress=False)
    with pytest.raises(DownloadError, match=r"notes\.txt, which is not part of ml-test"):
        ml.download("ml-test", home, progress=False, force=True)  # never deletes a file of the user's
    assert (stale / "notes.txt").read_text() == "mine"
    assert leftovers(home) == ["ml-test"]
    (stale / "notes.txt").unlink()
    ml.download("ml-test", home, progress=False, force=True)
    assert (stale / "u.data").read_text() == U_DATA
    assert leftovers(home) == ["ml-test"]


def test_load_movielens_download_flag(monkeypatch: pytest.MonkeyPatch, archive: Path, home: Path) -> None:
    register(monkeypatch, archive)
    ds = ml.load_movielens("ml-test", data_home=home, download=True)
    assert len(ds) == 4


def test_download_md5_algorithm(monkeypatch: pytest.MonkeyPatch, archive: Path, home: Path) -> None:
    register(monkeypatch, archive, checksum=hashlib.md5(archive.read_bytes()).hexdigest(), algorithm="md5")
    ml.download("ml-test", home, progress=False)
    assert ml.is_present("ml-test", home)


def test_download_published_md5(
    monkeypatch: pytest.MonkeyPatch, archive: Path, home: Path, tmp_path: Path
) -> None:
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    md5_file = tmp_path / "ml-test.zip.md5"
    md5_file.write_text(f"MD5 (ml-test.zip) = {md5}\n")
    register(monkeypatch, archive, checksum=None, algorithm="md5", size=None, checksum_url=md5_file.as_uri())
    ml.download("ml-test", home, progress=False)
    assert ml.is_present("ml-test", home)

    md5_file.write_text("0" * 32 + "  ml-test.zip\n")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        ml.download("ml-test", home, progress=False, force=True)
    assert ml.is_present("ml-test", home)  # the good copy is untouched by a failed re-download


def test_bad_checksum_leaves_nothing(monkeypatch: pytest.MonkeyPatch, archive: Path, home: Path) -> None:
    register(monkeypatch, archive, checksum="ab" * 32)
    with pytest.raises(DownloadError) as err:
        ml.download("ml-test", home, progress=False)
    msg = str(err.value)
    assert "checksum mismatch" in msg
    assert "ab" * 32 in msg
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in msg
    assert leftovers(home) == []
    assert not ml.is_present("ml-test", home)


def test_real_spec_rejects_a_wrong_archive(archive: Path, home: Path) -> None:
    data = archive.read_bytes()
    with pytest.raises(DownloadError, match="expected 4924029"):
        ml.download("ml-100k", home, progress=False, opener=lambda url: FakeResponse(data))
    assert leftovers(home) == []


class FakeResponse:
    """A urlopen stand-in that serves ``data`` and can fail after ``fail_after`` bytes."""

    def __init__(self, data: bytes, *, fail_after: int | None = None, length: int | None = None) -> None:
        self._buf = io.BytesIO(data)
        self._fail_after = fail_after
        self.headers = {"Content-Length": str(len(data) if length is None else length)}

    def read(self, n: int = -1) -> bytes:
        if self._fail_after is not None and self._buf.tell() >= self._fail_after:
            raise ConnectionResetError("connection reset by peer")
        size = n if self._fail_after is None else min(n, self._fail_after - self._buf.tell())
        return self._buf.read(size)

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_interrupted_download_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, archive: Path, home: Path
) -> None:
    spec = register(monkeypatch, archive, size=None)
    data = archive.read_bytes()
    with pytest.raises(DownloadError, match="connection reset") as err:
        ml.download("ml-test", home, progress=False, opener=lambda url: FakeResponse(data, fail_after=100))
    assert spec.url in str(err.value)
    assert leftovers(home) == []
    assert not ml.is_present("ml-test", home)

    # a server that closes early without an error: caught by Content-Length
    short = lambda url: FakeResponse(data[:100], length=len(data))  # noqa: E731
    with pytest.raises(DownloadError, match="after 100 of"):
        ml.download("ml-test", home, progress=False, opener=short)
    assert leftovers(home) == []


SLOW_DOWNLOAD = """
import io, sys, time
from reelrec.data import grouplens as gl

class Slow:
    headers = {"Content-Length": "100000000"}
    def __enter__(self): return self
    def __exit__(self, *exc): return None
    def read(self, n):
        time.sleep(0.05)
        return b"x" * 1000

spec = gl.MovieLensSpec(name="ml-test", url="http://example.invalid/ml-test.zip", folder="ml-test",
    layout=gl.ML100K_LAYOUT, checksum="0" * 64, algorithm="sha256", size=None, description="slow")
gl.DATASETS["ml-test"] = spec
print("started", flush=True)
gl.download("ml-test", sys.argv[1], progress=False, opener=lambda url: Slow())
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_download_ended_by_a_signal_leaves_no_part_file(home: Path, sig: str) -> None:
    """Issue 23: a killed download left a 0-byte ``.part`` until the next download. A download
    ended by SIGTERM, SIGHUP or Ctrl+C removes its temporary files, then ends as the signal asks."""
    import signal
    import subprocess
    import sys
    import time

    def default_signals() -> None:  # as a terminal starts it, whatever ran the tests (nohup, &)
        for name in ("SIGTERM", "SIGHUP", "SIGINT"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)

    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_DOWNLOAD, str(home)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".part") for p in home.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(p.name.endswith(".part") for p in home.iterdir())
        proc.send_signal(getattr(signal, sig))
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert code != 0
    if sig != "SIGINT":
        assert code == -getattr(signal, sig)  # ended by the signal, as without reelrec
    assert leftovers(home) == []


def test_what_a_download_killed_with_sigkill_left_is_removed_on_the_next_start(home: Path) -> None:
    """SIGKILL cannot be caught: the next listing or load of a dataset removes the ``.part`` file
    and extraction folder of a writer that is gone, never those of a live download or files
    reelrec did not name."""
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale_part = home / f".ml-100k.{dead_pid}.0123abcd.zip.part"
    stale_part.write_bytes(b"")
    stale_dir = home / f".ml-1m.{dead_pid}.0123abcd.extract"
    stale_dir.mkdir()
    live_part = home / f".ml-100k.{os.getpid()}.89abcdef.zip.part"  # a download running now
    live_part.write_bytes(b"partial")
    mine = home / "ml-100k.zip.part"  # not a name reelrec makes
    mine.write_bytes(b"user's")
    ml.list_datasets(home)
    assert leftovers(home) == sorted([live_part.name, mine.name])
    stale_part.write_bytes(b"")
    with pytest.raises(DataError):
        ml.load_movielens("ml-100k", data_home=home)  # not there: the load still cleans up
    assert leftovers(home) == sorted([live_part.name, mine.name])


def test_no_network_message(home: Path) -> None:
    def offline(url: str) -> None:
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    with pytest.raises(DownloadError) as err:
        ml.download("ml-1m", home, progress=False, opener=offline)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("cannot download ml-1m (")
    assert "fetch https://files.grouplens.org/datasets/movielens/ml-1m.zip" in msg
    assert f"unzip it into {home}/" in msg
    assert str(home / "ml-1m" / "ratings.dat") in msg
    assert "REELREC_DATA_HOME" in msg
    assert leftovers(home) == []


def test_zip_path_traversal_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: Path) -> None:
    evil = tmp_path / "evil.zip"
    make_zip(evil, {"ml-test/u.data": b"1\t1\t1\t1\n", "../../escaped.txt": b"pwned"})
    register(monkeypatch, evil)
    with pytest.raises(DownloadError, match="unsafe path"):
        ml.download("ml-test", home, progress=False)
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))
    assert leftovers(home) == []


def test_archive_without_the_expected_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: Path
) -> None:
    bad = tmp_path / "bad.zip"
    make_zip(bad, {"other/u.data": b"1\t1\t1\t1\n"})
    register(monkeypatch, bad)
    with pytest.raises(DownloadError, match=r"the archive has no ml-test/u\.data"):
        ml.download("ml-test", home, progress=False)
    assert leftovers(home) == []


def test_unwritable_home(monkeypatch: pytest.MonkeyPatch, archive: Path, tmp_path: Path) -> None:
    register(monkeypatch, archive)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DownloadError, match="cannot write to"):
        ml.download("ml-test", blocker / "home", progress=False)


# ---------------------------------------------------------------------------- real data
@pytest.fixture
def real_home() -> Path:
    """``$REELREC_DATA_HOME`` (the shared MovieLens copies), or skip."""
    value = os.environ.get("REELREC_DATA_HOME")
    if not value:
        skip_or_fail("REELREC_DATA_HOME is not set; point it at the folder holding ml-100k/ etc.")
    return Path(value)


def _need(home: Path, *files: str) -> None:
    missing = [f for f in files if not (home / f).is_file()]
    if missing:
        skip_or_fail(f"real MovieLens files absent under REELREC_DATA_HOME={home}: {', '.join(missing)}")


@pytest.fixture
def ml100k_home(real_home: Path) -> Path:
    _need(
        real_home, "ml-100k/u.data", "ml-100k/u.item", "ml-100k/u.user", "ml-100k/u1.base", "ml-100k/u1.test"
    )
    return real_home


@pytest.fixture
def latest_small_home(real_home: Path) -> Path:
    _need(real_home, "ml-latest-small/ratings.csv", "ml-latest-small/movies.csv", "ml-latest-small/tags.csv")
    return real_home


@pytest.fixture
def ml1m_meta_home(real_home: Path) -> Path:
    _need(real_home, "ml-1m/movies.dat", "ml-1m/users.dat")
    return real_home


@pytest.mark.realdata
def test_real_ml100k(ml100k_home: Path) -> None:
    ds = ml.load_movielens("ml-100k", data_home=ml100k_home)
    assert (len(ds), ds.n_users, ds.n_items) == (100000, 943, 1682)
    assert float(ds.rating.astype(np.float64).mean()) == pytest.approx(3.529860, abs=1e-6)
    assert (int(ds.timestamp.min()), int(ds.timestamp.max())) == (874724710, 893286638)
    assert ds.item_info.loc[1].tolist() == ["Toy Story", 1995, "Animation|Children's|Comedy"]
    assert ds.item_info.loc[1412, "year"] == 1995  # no year in the title: the release date's
    assert ds.user_info.loc[1].tolist() == [24, "M", "technician", "85711"]
    base, test = ml.load_ml100k_split("u1", data_home=ml100k_home)
    assert (len(base), len(test)) == (80000, 20000)


@pytest.mark.realdata
def test_real_ml_latest_small(latest_small_home: Path) -> None:
    ds = ml.load_movielens("ml-latest-small", data_home=latest_small_home)
    assert (len(ds), ds.n_users, ds.n_items) == (100836, 610, 9724)
    assert float(ds.rating.astype(np.float64).mean()) == pytest.approx(3.501557, abs=1e-6)
    assert len(ds.item_info) == 9742
    assert ds.item_info.loc[11, "title"] == "American President, The"
    assert len(ml.load_tags("ml-latest-small", data_home=latest_small_home)) == 3683


@pytest.mark.realdata
def test_real_ml1m_movies_and_users(ml1m_meta_home: Path) -> None:
    items = ml.load_items("ml-1m", data_home=ml1m_meta_home)
    assert len(items) == 3883
    assert items.index.max() == 3952
    assert items.loc[1].tolist() == ["Toy Story", 1995, "Animation|Children's|Comedy"]
    assert items.loc[73, "title"] == "Misérables, Les"  # Latin-1 decoded
    assert items["year"].notna().all()
    users = ml.load_users("ml-1m", data_home=ml1m_meta_home)
    assert len(users) == 6040
    assert users.loc[1].tolist() == [1, "F", "K-12 student", "48067"]
    assert set(users["occupation"]) == set(ml.ML1M_OCCUPATIONS)
