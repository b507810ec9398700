"""The epochs of gradient training (a :class:`~reelrec.models.fitting.GradientSteps` plan).

Data lives as three tensors on the target device; each epoch draws one permutation (the fit's
own ``torch.Generator``) and walks it in large contiguous slices, so there is no per-sample Python
and no DataLoader overhead. A model that trains on rows of its own (AutoRec's item rating
vectors) is walked by those rows and minimises its ``rows_loss``. The gradient of a batch comes
from autograd, or from the model's closed form (MF), dense or by rows; how the tables are stepped
(:func:`row_mode`) is decided once per fit from the config, the data's size and the plan. In a
data-parallel job (:mod:`.distributed`) each rank takes its shard of every batch and the
gradients are reduced before the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.models.base import RatingModel
from reelrec.models.fitting import GradientSteps
from reelrec.training.distributed import DistContext
from reelrec.training.epochs import Tick, as_tensors
from reelrec.training.optimizers import build_optimizers, build_schedulers, rows_of

if TYPE_CHECKING:
    from reelrec.training.trainer import TrainConfig

__all__ = ["ROW_SPARSE_MIN_ROWS", "GradientEpochs", "row_mode"]

#: with ``row_sparse="auto"``, tables with fewer rows (users + items) than this step densely
#: (ML-1M: 9,746; ML-10M: 80,555; ML-25M: 224,964)
ROW_SPARSE_MIN_ROWS = 50_000

RowMode = Literal["dense", "model", "autograd"]


def row_mode(cfg: TrainConfig, plan: GradientSteps, model: nn.Module, train: Dataset) -> RowMode:
    """How a fit steps the embedding tables (see ``TrainConfig.row_sparse``): ``dense`` (every
    row every batch), ``model`` (the plan's closed-form gradient by rows) or ``autograd`` (sparse
    embedding gradients from autograd, stepped by rows)."""
    if cfg.row_sparse == "off" or cfg.grad_clip or cfg.weight_decay:
        return "dense"
    if cfg.optimizer not in ("adam", "sgd") or plan.rows is not None:
        return "dense"
    rows = train.n_users + train.n_items
    if cfg.row_sparse == "auto" and (rows <= 4 * cfg.batch_size or rows < ROW_SPARSE_MIN_ROWS):
        # a batch touches much of the tables anyway (dense fused steps are as cheap), or the
        # tables are small enough that dense steps cost little: keep the dense optimisers
        # every small-data figure was measured with
        return "dense"
    if plan.gradient is not None:
        return "model"
    if any(isinstance(m, nn.Embedding) and m.weight.requires_grad for m in model.modules()):
        return "autograd"
    return "dense"


def _scale_grads(model: nn.Module, share: float) -> None:
    if share != 1.0:
        for p in model.parameters():
            if p.grad is not None:
                p.grad.mul_(share)


class GradientEpochs:
    """Minibatch epochs of a :class:`GradientSteps` plan (see the module docs)."""

    iterative = True
    records_rate = True

    def __init__(
        self,
        model: RatingModel,
        plan: GradientSteps,
        train: Dataset,
        config: TrainConfig,
        *,
        device: torch.device,
        seed: int,
        dist: DistContext | None = None,
    ) -> None:
        self.model, self.plan, self.config, self.dist = model, plan, config, dist
        self.triples = as_tensors(train, device) if plan.rows is None else None
        self.size = len(train) if plan.rows is None else plan.rows
        self.unit = "rating" if plan.rows is None else "row"
        self.device = device
        self.mode = "dense" if plan.rows is not None else row_mode(config, plan, model, train)
        self.opts, self.row_params = build_optimizers(model, config, self.mode)
        self.schedulers = build_schedulers(config, self.opts)
        # sparse_adam steps sparse embedding gradients from autograd: no closed-form dense gradient
        dense_ok = self.mode == "dense" and config.optimizer != "sparse_adam"
        self.dense_gradient = plan.gradient if dense_ok else None
        self.generator = torch.Generator().manual_seed(seed)
        # the rating triples in this epoch's order (buffers reused every epoch): a batch is a
        # slice, not three gathers (data-parallel ranks gather their shard of each batch instead)
        self.shuffled = None
        if self.triples is not None and dist is None:
            self.shuffled = tuple(torch.empty_like(t) for t in self.triples)

    def describe(self) -> str:
        if self.mode == "dense":
            return f"gradient steps ({'closed-form' if self.dense_gradient else 'autograd'} gradients)"
        return f"row-sparse steps of {len(self.row_params)} tables ({self.mode} gradients)"

    def divergence(self, epoch: int, loss: float) -> str:
        return f"training diverged at epoch {epoch} (loss {loss}); lower the learning rate"

    def train_epoch(self, epoch: int, tick: Tick | None = None) -> dict[str, float]:
        """One pass over the data in a fresh permutation: ``train_loss`` (the mean batch loss,
        weighted by batch size) and the learning rate it ran at."""
        n, bs, dist = self.size, self.config.batch_size, self.dist
        perm = torch.randperm(n, generator=self.generator).to(self.device)
        total = torch.zeros((), device=self.device)
        if self.shuffled is not None:  # one gather per epoch; each batch is then a slice
            for src, dst in zip(self.triples, self.shuffled, strict=True):  # type: ignore[arg-type]
                torch.index_select(src, 0, perm, out=dst)
        for s in range(0, n, bs):
            idx = perm[s : s + bs]
            share = 1.0
            batch = None if self.shuffled is None else tuple(t[s : s + bs] for t in self.shuffled)
            if dist is not None:
                if idx.shape[0] < dist.world:
                    continue  # a tail too short to give every rank a rating
                full, idx = idx.shape[0], dist.shard(idx)
                share = idx.shape[0] / full  # this rank's part of the global mean
                if self.triples is not None:
                    batch = tuple(t[idx] for t in self.triples)
            loss = self._step(idx, batch, share)
            total += loss.detach() * idx.shape[0]
            if tick is not None:
                tick(idx.shape[0], loss)
        if dist is not None:
            total = dist.sum_scalar(total)
        return {"train_loss": float(total) / n, "lr": self.opts[0].param_groups[0]["lr"]}

    def _step(self, idx: torch.Tensor, batch: tuple[torch.Tensor, ...] | None, share: float) -> torch.Tensor:
        """One optimiser step on a batch (rating triples, or the model's rows ``idx``)."""
        model, dist, cfg = self.model, self.dist, self.config
        if self.mode == "model":
            loss, grads = self.plan.gradient.rows(*batch)  # type: ignore[union-attr,misc]
            if dist is not None:
                grads = dist.gather_rows([(p, r, g.mul_(share)) for p, r, g in grads])
            self.opts[0].set_rows(grads)
        elif batch is None:
            loss = self._backward(self.plan.rows_loss(idx), share)  # type: ignore[misc]
        elif self.dense_gradient is not None:  # closed-form gradients written into .grad
            loss = self.dense_gradient.dense(*batch)
            if dist is not None:
                _scale_grads(model, share)
                dist.reduce_dense(list(model.parameters()))
        else:
            loss = self._backward(model.training_loss(*batch), share)
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        for o in self.opts:
            o.step()
        return loss

    def _backward(self, loss: torch.Tensor, share: float) -> torch.Tensor:
        """Autograd's gradient of ``loss``, reduced over the ranks (row-sparse tables by rows)."""
        dist = self.dist
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        if dist is not None:
            _scale_grads(self.model, share)
        if self.mode == "autograd":
            grads = rows_of(self.row_params)
            self.opts[0].set_rows(grads if dist is None else dist.gather_rows(grads))
        if dist is not None:
            dist.reduce_dense(list(self.model.parameters()))
        return loss

    def end_epoch(self, record: dict[str, float]) -> None:
        """Step the learning-rate schedules (a plateau schedule on the validation score)."""
        for sch in self.schedulers:
            if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sch.step(record.get("valid_rmse", record.get("valid_loss", record["train_loss"])))
            else:
                sch.step()

    def finalize(self) -> None:
        """Sparse gradients are a training-time detail: the fitted model is an ordinary module."""
        for module in self.model.modules():
            if isinstance(module, nn.Embedding):
                module.sparse = False
