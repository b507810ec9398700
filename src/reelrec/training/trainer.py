"""The one training loop shared by every neural model.

Data lives as three tensors on the target device; each epoch draws one permutation and walks
it in large contiguous slices, so there is no per-sample Python and no DataLoader overhead.
A model that trains on rows of its own (AutoRec's item rating vectors) says so through
``training_rows``; the loop then permutes those rows and minimises the model's ``rows_loss``.
Early stopping watches validation RMSE (clipped to the rating scale) and restores the best
weights. A fixed seed gives bit-identical weights on the CPU.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import RatingModel
from reelrec.training import distributed
from reelrec.training.epochs import (
    EarlyStopping,
    TrainResult,
    _as_tensors,
    predict_indices,
    validation_rmse,
    validation_score,
)
from reelrec.training.fused import FusedAdam
from reelrec.training.rows import RowAdam, RowSGD

__all__ = [
    "EarlyStopping",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "predict_indices",
    "resolve_device",
    "seed_everything",
    "validation_rmse",
    "validation_score",
]

log = logging.getLogger(__name__)

#: with ``row_sparse="auto"``, tables with fewer rows (users + items) than this step densely
#: (ML-1M: 9,746; ML-10M: 80,555; ML-25M: 224,964)
ROW_SPARSE_MIN_ROWS = 50_000

OptimizerName = Literal["adam", "adamw", "adamax", "sgd", "adagrad", "sparse_adam"]


class TrainConfig(BaseModel):
    """Hyperparameters of the training loop (device and seed are runtime options, not here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(40, ge=1, le=10_000)
    batch_size: int = Field(4096, ge=1, le=10_000_000)
    learning_rate: float = Field(3e-3, gt=0, le=10)
    optimizer: OptimizerName = "adam"
    weight_decay: float = Field(0.0, ge=0, description="decoupled (adamw) or L2 (others) weight decay")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    lr_schedule: Literal["constant", "cosine", "step", "plateau"] = "constant"
    lr_gamma: float = Field(0.5, gt=0, le=1, description="decay factor of the step/plateau schedules")
    lr_step: int = Field(10, ge=1, description="epochs between decays of the step schedule")
    patience: int = Field(
        3, ge=0, description="epochs without validation improvement before stopping (0: never)"
    )
    min_delta: float = Field(1e-4, ge=0, description="smallest RMSE drop that counts as an improvement")
    grad_clip: float | None = Field(None, gt=0)
    row_sparse: Literal["auto", "on", "off"] = Field(
        "auto",
        description="step only the table rows a batch touches (lazy Adam / SGD, reelrec.training.rows) "
        "for models that give row gradients (MF): 'on', 'off' (dense optimisers: every row every "
        "batch), or 'auto' (on with adam/sgd when the tables have more rows than 4 batches and "
        "at least ROW_SPARSE_MIN_ROWS = 50,000: ML-10M and larger)",
    )
    refit: bool = Field(
        False,
        description="after early stopping, retrain from scratch on train + validation for the best number "
        "of epochs (used by Recommender.train)",
    )
    refit_models: int = Field(
        1,
        ge=1,
        le=16,
        description="with refit, retrain this many models (seeds seed, seed + 1, ...) and average their "
        "predictions; models that can merge the average into one model of their own kind (MF: "
        "concatenated factors) use it, the others keep the first",
    )
    average_validated: bool = Field(
        False,
        description="with refit, also average in the model early-stopped on the training part (models "
        "that can merge an average, MF): one more member without another training",
    )
    decode: Literal["model", "thresholds"] = Field(
        "model",
        description="how the run turns a prediction into a rating level (the class that accuracy scores): "
        "'model': the most probable level of a softmax head, otherwise the rating rounded to the nearest "
        "level; 'thresholds': the predicted rating cut at the points that maximise exact-match accuracy on "
        "the validation part (reelrec.models.decoding; fitted on the early-stopped model before any refit, "
        "saved with the run; needs a validation part and a discrete rating scale)",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.optimizer == "sparse_adam" and self.weight_decay:
            raise ValueError("sparse_adam does not support weight_decay; use the model's reg instead")
        return self


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (model initialisation happens after this)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds code that uses the legacy global state
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but no CUDA GPU is available")
    return dev


def _fusable(params: list[torch.nn.Parameter]) -> bool:
    """True when torch's fused optimiser kernels apply: dense floating-point parameters, all on
    one CPU or CUDA device."""
    if not params:
        return False
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(p.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16) for p in params)
    )


def _scale_grads(model: nn.Module, share: float) -> None:
    if share != 1.0:
        for p in model.parameters():
            if p.grad is not None:
                p.grad.mul_(share)


def _sparse_embeddings(model: nn.Module) -> list[nn.Parameter]:
    """Switch the model's trainable embedding tables to sparse gradients; their weights."""
    out = []
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.weight.requires_grad:
            module.sparse = True
            out.append(module.weight)
    return out


def _rows_of(params: list[nn.Parameter]) -> list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]]:
    """Each parameter's gradient as ``(param, unique rows, their gradient)``: sparse gradients
    (embeddings with ``sparse=True``) give their touched rows; a dense one (a table the model also
    reads whole) gives every row. The gradients are released."""
    out = []
    for p in params:
        g = p.grad
        if g is None:
            continue
        if g.is_sparse:
            g = g.coalesce()
            out.append((p, g.indices()[0], g.values()))
        else:
            out.append((p, torch.arange(p.shape[0], device=p.device), g))
        p.grad = None
    return out


class Trainer:
    """Fits a :class:`RatingModel` by minibatch gradient descent.

    Args:
        config: the loop's hyperparameters.
        seed: seeds the epoch permutations (seed the model's initialisation with
            :func:`seed_everything` before building it).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        progress: show a tqdm bar with the live loss.
    """

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        seed: int = 42,
        device: str | torch.device | None = "auto",
        progress: bool = False,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.seed = seed
        self.device = resolve_device(device)
        self.progress = progress
        #: called after every epoch with its history record; may raise to stop training
        #: (``reelrec tune`` prunes unpromising trials this way)
        self.on_epoch = on_epoch

    # ------------------------------------------------------------------ optimisers
    def _row_mode(self, model: RatingModel, train: Dataset) -> Literal["dense", "model", "autograd"]:
        """How this fit steps the embedding tables (see ``TrainConfig.row_sparse``): ``dense``
        (every row every batch), ``model`` (the model's own :meth:`~RatingModel.row_gradients`) or
        ``autograd`` (sparse embedding gradients from autograd, stepped by rows)."""
        cfg = self.config
        if cfg.row_sparse == "off" or cfg.grad_clip or cfg.weight_decay:
            return "dense"
        if cfg.optimizer not in ("adam", "sgd") or model.training_rows() is not None:
            return "dense"
        rows = train.n_users + train.n_items
        if cfg.row_sparse == "auto" and (rows <= 4 * cfg.batch_size or rows < ROW_SPARSE_MIN_ROWS):
            # a batch touches much of the tables anyway (dense fused steps are as cheap), or the
            # tables are small enough that dense steps cost little: keep the dense optimisers
            # every small-data figure was measured with
            return "dense"
        probe = torch.zeros(1, dtype=torch.long, device=self.device)
        if model.row_gradients(probe, probe, torch.zeros(1, device=self.device)) is not None:
            return "model"
        if any(isinstance(m, nn.Embedding) and m.weight.requires_grad for m in model.modules()):
            return "autograd"
        return "dense"

    def _optimizers(
        self, model: nn.Module, row_mode: str = "dense"
    ) -> tuple[list[torch.optim.Optimizer], list[nn.Parameter]]:
        """The optimisers, and the parameters whose gradients are stepped by rows."""
        cfg = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        lr, wd = cfg.learning_rate, cfg.weight_decay
        if row_mode != "dense":
            row_params = params if row_mode == "model" else _sparse_embeddings(model)
            row_ids = {id(p) for p in row_params}
            dense_params = [p for p in params if id(p) not in row_ids]
            if cfg.optimizer == "sgd":
                opts: list[torch.optim.Optimizer] = [RowSGD(row_params, lr=lr, momentum=cfg.momentum)]
                if dense_params:
                    opts.append(torch.optim.SGD(dense_params, lr=lr, momentum=cfg.momentum))
            else:
                opts = [RowAdam(row_params, lr=lr)]
                if dense_params:
                    fused = {"fused": True} if _fusable(dense_params) else {}
                    opts.append(torch.optim.Adam(dense_params, lr=lr, **fused))
            return opts, row_params
        if cfg.optimizer == "sparse_adam":
            emb_params = _sparse_embeddings(model)
            ids = {id(p) for p in emb_params}
            dense = [p for p in params if id(p) not in ids]
            opts: list[torch.optim.Optimizer] = []
            if emb_params:
                opts.append(torch.optim.SparseAdam(emb_params, lr=lr))
            if dense:
                opts.append(torch.optim.Adam(dense, lr=lr))
            return opts, []
        # one fused kernel per step instead of a dozen element-wise passes over every parameter:
        # 2.5x less optimiser time (MF on ML-1M: 0.42 -> 0.17 s per epoch on one CPU thread)
        fused = {"fused": True} if _fusable(params) else {}
        if cfg.optimizer == "adam" and fused and cfg.lr_schedule == "constant":
            # the same kernel without torch.optim's import and per-step cost (training/fused.py)
            return [FusedAdam(params, lr=lr, weight_decay=wd)], []  # type: ignore[list-item]
        factories = {
            "adam": lambda: torch.optim.Adam(params, lr=lr, weight_decay=wd, **fused),
            "adamw": lambda: torch.optim.AdamW(params, lr=lr, weight_decay=wd, **fused),
            "adamax": lambda: torch.optim.Adamax(params, lr=lr, weight_decay=wd),
            "sgd": lambda: torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd, **fused),
            "adagrad": lambda: torch.optim.Adagrad(params, lr=lr, weight_decay=wd, **fused),
        }
        return [factories[cfg.optimizer]()], []

    def _schedulers(self, opts: list[torch.optim.Optimizer]) -> list[Any]:
        cfg = self.config
        if cfg.lr_schedule == "cosine":
            return [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=cfg.epochs) for o in opts]
        if cfg.lr_schedule == "step":
            return [
                torch.optim.lr_scheduler.StepLR(o, step_size=cfg.lr_step, gamma=cfg.lr_gamma) for o in opts
            ]
        if cfg.lr_schedule == "plateau":
            return [
                torch.optim.lr_scheduler.ReduceLROnPlateau(
                    o, factor=cfg.lr_gamma, patience=max(0, cfg.patience // 2)
                )
                for o in opts
            ]
        return []

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        model: RatingModel,
        train: Dataset,
        valid: Dataset | None = None,
        init_from: dict[str, RatingModel] | None = None,
    ) -> TrainResult:
        """Train ``model`` in place on ``train``; early-stop on ``valid`` when given. ``init_from``:
        pre-trained models (by role) the model starts from (:meth:`RatingModel.init_from`, after
        :meth:`RatingModel.prepare`; see :mod:`reelrec.training.pretrained`)."""
        if len(train) == 0:
            raise ConfigError("cannot train on an empty training set")
        cfg = self.config
        start = time.perf_counter()
        model.to(self.device)
        model.prepare(train)
        if init_from:
            model.init_from({role: other.to(self.device) for role, other in init_from.items()})
        sweep = model.sweeper(train)
        if sweep is not None:  # a model with its own solver (ALS): one sweep per epoch
            from reelrec.training.sweeps import fit_sweeps

            return fit_sweeps(self, model, sweep, train, valid, start)
        if not model.trainable:
            model.fit_closed_form(train)
            result = TrainResult(seconds=time.perf_counter() - start)
            if valid is not None and len(valid):
                result.valid_metric, result.best_valid = validation_score(
                    model, _as_tensors(valid, self.device), train.scale
                )
            return result

        # the model's own rows (e.g. AutoRec's item vectors) or, by default, the rating triples
        rows = model.training_rows()
        users, items, ratings = _as_tensors(train, self.device) if rows is None else (None, None, None)
        valid_t = _as_tensors(valid, self.device) if valid is not None and len(valid) else None
        scale = train.scale
        row_mode = "dense" if rows is not None else self._row_mode(model, train)
        opts, row_params = self._optimizers(model, row_mode)
        if row_mode != "dense":
            log.info("stepping %d embedding tables by rows (%s gradients)", len(row_params), row_mode)
        scheds = self._schedulers(opts)
        gen = torch.Generator().manual_seed(self.seed)
        n, bs = (len(train) if rows is None else rows), cfg.batch_size
        result = TrainResult()
        stopping = EarlyStopping(cfg, result)

        ctx = distributed.current()
        bar = None
        if self.progress and (ctx is None or ctx.is_main):
            from tqdm.auto import tqdm

            # counted in ratings (or the model's rows): the rate and the ETA (to the last epoch;
            # early stopping may end sooner) read directly
            bar = tqdm(
                total=cfg.epochs * n,
                unit="rating" if rows is None else "row",
                unit_scale=True,
                desc=f"train {model.name}",
                leave=False,
            )
        # the rating triples in this epoch's order (buffers reused every epoch): a batch is a
        # slice, not three gathers (data-parallel ranks gather their shard of each batch instead)
        shuffled = None
        if rows is None and ctx is None:
            shuffled = tuple(torch.empty_like(t) for t in (users, items, ratings))

        def validate(epoch: int) -> tuple[str, float]:
            key, v = validation_score(model, valid_t, scale)
            if ctx is not None:  # the ranks hold the same model; rank 0's figure decides
                v = ctx.broadcast_float(v)
            stopping.update(model, epoch, key, v)
            return key, v

        if init_from and valid_t is not None:
            # a pre-trained start is the first candidate: fine-tuning that only loses on the
            # validation part keeps it (best_epoch 0), instead of its least bad epoch
            log.info("epoch 0 (the pre-trained start) %s %.5f", *validate(0))
        model.train()
        try:
            for epoch in range(1, cfg.epochs + 1):
                t0 = time.perf_counter()
                perm = torch.randperm(n, generator=gen).to(self.device)
                total = torch.zeros((), device=self.device)
                if shuffled is not None:  # one gather per epoch; each batch is then a slice
                    for src, dst in zip((users, items, ratings), shuffled, strict=True):
                        torch.index_select(src, 0, perm, out=dst)
                for b, s in enumerate(range(0, n, bs)):
                    idx = perm[s : s + bs]
                    share = 1.0
                    if shuffled is not None:
                        b_users, b_items, b_ratings = (t[s : s + bs] for t in shuffled)
                    if ctx is not None:
                        if idx.shape[0] < ctx.world:
                            continue  # a tail too short to give every rank a rating
                        full, idx = idx.shape[0], ctx.shard(idx)
                        share = idx.shape[0] / full  # this rank's part of the global mean
                        if rows is None:
                            b_users, b_items, b_ratings = users[idx], items[idx], ratings[idx]
                    if row_mode == "model":
                        loss, row_grads = model.row_gradients(b_users, b_items, b_ratings)
                        if ctx is not None:
                            row_grads = ctx.gather_rows([(p, r, g.mul_(share)) for p, r, g in row_grads])
                        opts[0].set_rows(row_grads)
                        manual = True
                    elif rows is None:
                        # closed-form gradients written in place when the model has them
                        loss = model.batch_gradients(b_users, b_items, b_ratings)
                        manual = loss is not None
                        if loss is None:
                            loss = model.training_loss(b_users, b_items, b_ratings)
                        elif ctx is not None:
                            _scale_grads(model, share)
                            ctx.reduce_dense(list(model.parameters()))
                    else:
                        manual = False
                        loss = model.rows_loss(idx)
                    if not manual:
                        for o in opts:
                            o.zero_grad(set_to_none=True)
                        loss.backward()
                        if ctx is not None:
                            _scale_grads(model, share)
                        if row_mode == "autograd":
                            row_grads = _rows_of(row_params)
                            opts[0].set_rows(row_grads if ctx is None else ctx.gather_rows(row_grads))
                        if ctx is not None:
                            ctx.reduce_dense(list(model.parameters()))
                    if cfg.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    for o in opts:
                        o.step()
                    total += loss.detach() * idx.shape[0]
                    if bar is not None:
                        bar.update(idx.shape[0])
                        if b % 20 == 0:
                            bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.4f}", refresh=False)
                if ctx is not None:
                    total = ctx.sum_scalar(total)
                train_loss = float(total) / n
                if not math.isfinite(train_loss):
                    raise ConfigError(
                        f"training diverged at epoch {epoch} (loss {train_loss}); lower the learning rate"
                    )
                record: dict[str, float] = {"epoch": epoch, "train_loss": train_loss}
                lr_now = opts[0].param_groups[0]["lr"]
                if valid_t is not None:
                    key, v = validate(epoch)
                    record[key] = v
                record["lr"] = lr_now
                record["seconds"] = time.perf_counter() - t0
                record["rows_per_s"] = n / max(record["seconds"], 1e-9)
                result.history.append(record)
                if self.on_epoch is not None:
                    self.on_epoch(epoch, record)
                log.info("epoch %d %s", epoch, {k: round(v, 5) for k, v in record.items() if k != "epoch"})
                if bar is not None:
                    shown = {k: f"{v:.4f}" for k, v in record.items() if k.startswith("valid_")}
                    bar.set_postfix(epoch=epoch, loss=f"{train_loss:.4f}", **shown)
                for sch in scheds:
                    if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        sch.step(record.get("valid_rmse", record.get("valid_loss", train_loss)))
                    else:
                        sch.step()
                if valid_t is not None and stopping.should_stop(epoch):
                    break
        finally:
            if bar is not None:
                bar.close()
        stopping.restore(model)
        # sparse flags are a training-time detail; the saved model is an ordinary module
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                module.sparse = False
        model.eval()
        result.seconds = time.perf_counter() - start
        return result
