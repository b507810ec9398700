"""Data-parallel training on torch.distributed (``torchrun ... -m reelrec train``).

Every rank loads the same data and split (same seed), builds the same model (same seed) and walks
the same permutation each epoch; of each global batch of ``batch_size`` ratings a rank computes the
gradient of its own slice (``shard``), so the ranks together read each rating once per epoch. The
gradients are then combined so that every rank applies exactly the global batch's mean gradient:

* dense parameters (MLP layers, tables stepped densely): one ``all_reduce`` (sum) of ``.grad``;
* tables stepped by rows (``TrainConfig.row_sparse``): each rank's ``(rows, gradient rows)`` are
  gathered (``all_gather`` of the row counts, then of the padded rows and values) and coalesced, so
  the traffic per batch is ``world x batch rows x width``, not the table: a 100 MB table is never
  all-reduced.

Each rank's gradient is pre-scaled by its share of the global batch (``n_rank / n_batch``), so the
sum over ranks is the global mean however the batch divides. As every rank applies the same update
to the same parameters, the models stay identical; every rank scores the validation part and rank
0's figure is broadcast, so early stopping agrees across ranks. Only rank 0 writes the run.
Backends: gloo on CPU, NCCL on CUDA. A single process (no ``WORLD_SIZE`` in the environment,
read once into :class:`reelrec.options.Options`) never touches torch.distributed. The Trainer
takes the job's :class:`DistContext` once per fit (:func:`current`) and hands it to the epoch
object, which shards and reduces each batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist

from reelrec.models.base import RowGrad, coalesce_rows
from reelrec.options import get_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel job."""

    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch of indices (sizes differ by at most 1)."""
        n = idx.shape[0]
        lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
        return idx[lo:hi]

    def reduce_dense(self, params: list[torch.nn.Parameter]) -> None:
        """Sum the (pre-scaled) dense gradients over the ranks, in place."""
        grads = [p.grad for p in params if p.grad is not None and not p.grad.is_sparse]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def gather_rows(self, grads: list[RowGrad]) -> list[RowGrad]:
        """Every rank's row gradients of each table, summed by row (the same list on every rank)."""
        out: list[RowGrad] = []
        for param, rows, values in grads:
            count = torch.tensor([rows.shape[0]], dtype=torch.long, device=rows.device)
            counts = [torch.zeros_like(count) for _ in range(self.world)]
            dist.all_gather(counts, count)
            sizes = [int(c) for c in counts]
            top = max(sizes)
            pad_rows = torch.zeros(top, dtype=rows.dtype, device=rows.device)
            pad_rows[: rows.shape[0]] = rows
            pad_vals = torch.zeros((top, *values.shape[1:]), dtype=values.dtype, device=values.device)
            pad_vals[: values.shape[0]] = values
            all_rows = [torch.empty_like(pad_rows) for _ in range(self.world)]
            all_vals = [torch.empty_like(pad_vals) for _ in range(self.world)]
            dist.all_gather(all_rows, pad_rows)
            dist.all_gather(all_vals, pad_vals)
            joined_rows = torch.cat([r[:s] for r, s in zip(all_rows, sizes, strict=True)])
            joined_vals = torch.cat([v[:s] for v, s in zip(all_vals, sizes, strict=True)])
            out.append((param, *coalesce_rows(joined_rows, joined_vals)))
        return out

    def sum_scalar(self, value: torch.Tensor) -> torch.Tensor:
        total = value.detach().clone().reshape(1).float()
        dist.all_reduce(total)
        return total[0]

    def broadcast_float(self, value: float) -> float:
        """Rank 0's ``value`` on every rank."""
        t = torch.tensor([value], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.broadcast(t, src=0)
        return float(t[0])


def current() -> DistContext | None:
    """The running job's context, or ``None`` in a single process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistContext(dist.get_rank(), dist.get_world_size())
    return None


def init_from_env(device: str = "auto") -> DistContext | None:
    """Join the job torchrun describes in the environment (``WORLD_SIZE`` > 1), once; ``None`` when
    this is a single process. gloo on CPU, NCCL when the device is CUDA. torch reads the rest of
    torchrun's rendezvous (``MASTER_ADDR``, ``RANK`` ...) itself."""
    options = get_options()
    if options.world_size <= 1:
        return None
    if not dist.is_initialized():
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        backend = "nccl" if use_cuda and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(options.local_rank)
        dist.init_process_group(backend=backend)
        log.info("rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return current()


def local_world() -> int:
    """Processes of this job on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 alone)."""
    return get_options().local_world_size


def launch_local(argv: list[str], nproc: int) -> int:
    """``reelrec train --nproc N``: the same command line (``argv``, without ``--nproc``) as N
    local ranks under torchrun; returns its exit status."""
    import subprocess
    import sys

    argv = list(argv)
    for i, token in enumerate(argv):  # drop --nproc N / --nproc=N
        if token == "--nproc":
            del argv[i : i + 2]
            break
        if token.startswith("--nproc="):
            del argv[i]
            break
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd += ["-m", "reelrec", *argv]
    logging.getLogger("reelrec").info("launching %s", " ".join(cmd))
    return subprocess.run(cmd, check=False).returncode
