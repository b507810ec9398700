"""A run's randomness from its seed, scoped: nothing here reseeds the process for good.

A fit draws from three sources: the epoch permutations (the Trainer's own ``torch.Generator``,
seeded with ``Trainer(seed=...)``), a model's initialisation, and what the model draws while it
trains (dropout masks, BPR's negatives, ALS's random start), which use torch's global generator.
:func:`seeded` gives the last two their seed inside a ``with`` block (``torch.random.fork_rng``
+ ``torch.manual_seed``) and puts the process's generator state back afterwards, so building and
fitting a model inside ``with seeded(seed, device):`` gives the same numbers every time, and code
outside the block never sees its draws. numpy and Python's ``random`` are never seeded globally:
code that needs numpy randomness takes ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["seeded"]


@contextmanager
def seeded(seed: int, device: str | torch.device | None = None) -> Iterator[None]:
    """Inside the block torch's global generators (the CPU's, and the CUDA device's when
    ``device`` is a CUDA device: ``"auto"`` with a GPU, ``"cuda"``, ``"cuda:1"``) start from
    ``seed``; on leaving it they are restored to their state before the block."""
    devices: list[int] = []
    if device is not None and torch.cuda.is_available():
        dev = torch.device("cuda" if str(device) == "auto" else device)
        if dev.type == "cuda":
            devices = [torch.cuda.current_device() if dev.index is None else dev.index]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
