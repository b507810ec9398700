"""The process's switches from its environment, read once into one frozen :class:`Options`.

The library never reads ``os.environ`` deep inside: the variables below are read here, once, the
first time :func:`get_options` is called (or when an entry point calls :func:`set_options`), and
the code that needs a switch consults that one object:

=========================  =====================================================================
``REELREC_KERNELS``        ``torch`` turns the compiled (numba) kernels off (:mod:`reelrec.kernels`)
``REELREC_NO_CACHE``       ``1``/``true``/``yes`` turns the array cache off (:mod:`reelrec.data.cache`)
``REELREC_CACHE_DIR``      the array cache's folder instead of the one beside the data
``WORLD_SIZE``             torchrun's number of ranks (:mod:`reelrec.training.distributed`)
``LOCAL_RANK``             this rank's GPU on its machine
``LOCAL_WORLD_SIZE``       the ranks on this machine
``REELREC_DATA_HOME``      where MovieLens datasets are kept (``data_home``)
=========================  =====================================================================

This module imports nothing heavy (the light front door reads it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CACHE_DIR_ENV",
    "DATA_HOME_ENV",
    "KERNELS_ENV",
    "NO_CACHE_ENV",
    "Options",
    "get_options",
    "set_options",
]

DATA_HOME_ENV = "REELREC_DATA_HOME"
KERNELS_ENV = "REELREC_KERNELS"
NO_CACHE_ENV = "REELREC_NO_CACHE"
CACHE_DIR_ENV = "REELREC_CACHE_DIR"


def _count(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Options:
    """The environment's switches (see the module docs); defaults are a plain single process."""

    #: ``auto``: the compiled kernels where numba is installed; ``torch``: torch ops only
    kernels: Literal["auto", "torch"] = "auto"
    #: whether loaders cache the compact rating arrays (their ``cache=`` argument overrides it)
    cache: bool = True
    #: the array cache's folder (``None``: beside the data, else the user cache folder)
    cache_dir: str | None = None
    #: ranks of a torchrun job (1: a single process)
    world_size: int = 1
    #: this rank's device index on its machine
    local_rank: int = 0
    #: the job's ranks on this machine
    local_world_size: int = 1
    #: where MovieLens datasets are kept (``None``: the user cache folder)
    data_home: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Options:
        """The options ``environ`` (default: ``os.environ``) describes."""
        env = os.environ if environ is None else environ
        no_cache = env.get(NO_CACHE_ENV, "").strip().lower() not in ("", "0", "false", "no")
        return cls(
            kernels="torch" if env.get(KERNELS_ENV, "auto").strip().lower() == "torch" else "auto",
            cache=not no_cache,
            cache_dir=env.get(CACHE_DIR_ENV) or None,
            world_size=max(1, _count(env.get("WORLD_SIZE"), 1)),
            local_rank=max(0, _count(env.get("LOCAL_RANK"), 0)),
            local_world_size=max(1, _count(env.get("LOCAL_WORLD_SIZE"), 1)),
            data_home=env.get(DATA_HOME_ENV) or None,
        )


#: the process's options, read at the first :func:`get_options` (tests may set it to ``None`` with
#: ``monkeypatch.setattr`` after changing the environment, so that it is read again)
_current: Options | None = None


def get_options() -> Options:
    """The process's options: read from the environment at the first call, then the same object."""
    global _current
    if _current is None:
        _current = Options.from_environ()
    return _current


def set_options(options: Options | None = None) -> Options:
    """Make ``options`` the process's options (``None``: read the environment now); returns them.
    For entry points (and embedding applications) that decide the switches themselves."""
    global _current
    _current = Options.from_environ() if options is None else options
    return _current
