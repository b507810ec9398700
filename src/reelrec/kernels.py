"""The package's compiled (numba) kernels: one switch and one lazy build for all of them.

Each kernel module hands :class:`Kernel` a ``build(numba)`` function; the kernel is compiled on
first use (numba's ``cache=True`` then loads it from ``__pycache__`` in later processes). Without
numba, or with ``kernels="torch"`` in the process's :class:`~reelrec.options.Options`
(``REELREC_KERNELS=torch``), every kernel is ``None`` and its caller takes the numpy/torch path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reelrec.options import get_options


def numba_or_none() -> Any:
    """The numba module, or ``None`` without numba or with the ``torch`` kernels option."""
    if get_options().kernels == "torch":
        return None
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    return numba


class Kernel:
    """A compiled kernel built once, on the first call: ``kernel()`` returns it, or ``None`` when
    compiled kernels are off (``tried`` and ``kernel`` record the outcome)."""

    def __init__(self, build: Callable[[Any], Any]) -> None:
        self.build = build
        self.tried = False
        self.kernel: Any = None

    def __call__(self) -> Any:
        if not self.tried:
            self.tried = True
            numba = numba_or_none()
            self.kernel = None if numba is None else self.build(numba)
        return self.kernel
