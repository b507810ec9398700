"""How many CPU threads reelrec's numerical work uses.

On a machine whose cores other processes are using, torch's (OpenMP) worker threads wait on each
other at every operation (beside a busy training job the ML-100K demo takes 13.2 s with two threads
forced and 8.7 s with this module's choice, 9.4 s alone: ``benchmarks/contention.py``). So the
default, :func:`auto_threads`, takes only the cores that are idle when the command starts (cores
minus the processes running then, at least one), and ``--threads N`` overrides it.
"""

from __future__ import annotations

import logging
import os
import statistics
import time

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: samples of the run queue (and seconds between them) that :func:`busy_now` takes the median of
RUN_QUEUE_SAMPLES, RUN_QUEUE_GAP = 9, 0.005


def busy_now() -> float | None:
    """Other processes running right now: the median, over a few samples 5 ms apart, of the
    kernel's count of runnable tasks (``/proc/loadavg``'s fourth field) minus this process;
    ``None`` where that count is not available."""
    counts = []
    try:
        for k in range(RUN_QUEUE_SAMPLES):
            with open("/proc/loadavg", encoding="ascii") as fh:
                counts.append(int(fh.read().split()[3].split("/")[0]) - 1)
            if k + 1 < RUN_QUEUE_SAMPLES:
                time.sleep(RUN_QUEUE_GAP)
    except (OSError, ValueError, IndexError):
        return None
    return float(max(0, statistics.median(counts)))


def auto_threads() -> int:
    """Idle cores now: available cores minus the processes running now (:func:`busy_now`; the
    one-minute load average where that count is unavailable), at least 1. The load average alone
    lags: for a minute after a job ends it still counts it."""
    cores = available_cores()
    busy = busy_now()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover - not Unix
            busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def set_threads(threads: int | None) -> int:
    """Use ``threads`` threads in torch and the BLAS libraries (``None`` or 0: :func:`auto_threads`);
    returns the number set. The BLAS limit holds for the rest of the process."""
    import torch

    n = auto_threads() if not threads else int(threads)
    if n < 1:
        from reelrec.errors import ConfigError

        raise ConfigError(f"--threads must be at least 1 (got {threads})")
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        global _blas_limit
        _blas_limit = threadpool_limits(limits=n)
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass
    log.info("using %d CPU thread(s)%s", n, "" if threads else " (idle cores now; --threads to change)")
    return n


_blas_limit = None
