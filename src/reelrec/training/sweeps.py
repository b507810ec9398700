"""The epoch loop of models fitted by their own solver (ALS's closed-form sweeps).

:meth:`Trainer.fit <reelrec.training.Trainer.fit>` hands a model whose
:meth:`~reelrec.models.base.RatingModel.sweeper` returns a function to :func:`fit_sweeps`: one
call of that function per epoch instead of minibatch gradient steps, and everything else as in
gradient training: the per-epoch history (``train_loss``, the validation score, ``seconds``),
early stopping on the validation score with ``patience`` and ``min_delta`` (the best sweep's
parameters restored), the ``on_epoch`` callback and the progress bar. TrainConfig's optimiser
settings (learning rate, batch size, schedules) do not apply.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import RatingModel
from reelrec.training.epochs import EarlyStopping, TrainResult, _as_tensors, validation_score

if TYPE_CHECKING:
    from reelrec.training.trainer import Trainer

log = logging.getLogger(__name__)


def fit_sweeps(
    trainer: Trainer,
    model: RatingModel,
    sweep: Callable[[], float],
    train: Dataset,
    valid: Dataset | None,
    start: float,
) -> TrainResult:
    """Run ``sweep`` once per epoch of ``trainer.config``; see the module docs. ``start`` is the
    ``perf_counter`` time the fit began (preparation included in ``seconds``)."""

    cfg = trainer.config
    valid_t = _as_tensors(valid, trainer.device) if valid is not None and len(valid) else None
    result = TrainResult()
    stopping = EarlyStopping(cfg, result)
    bar = None
    if trainer.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, unit="sweep", desc=f"train {model.name}", leave=False)
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            loss = sweep()
            if not math.isfinite(loss):
                raise ConfigError(f"{model.name} diverged at sweep {epoch} (objective {loss}); raise reg")
            record: dict[str, float] = {"epoch": epoch, "train_loss": loss}
            if valid_t is not None:
                key, score = validation_score(model, valid_t, train.scale)
                record[key] = score
                stopping.update(model, epoch, key, score)
            record["seconds"] = time.perf_counter() - t0
            result.history.append(record)
            if trainer.on_epoch is not None:
                trainer.on_epoch(epoch, record)
            log.info("sweep %d %s", epoch, {k: round(v, 5) for k, v in record.items() if k != "epoch"})
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k != "epoch"}, refresh=False)
            if valid_t is not None and stopping.should_stop(epoch):
                break
    finally:
        if bar is not None:
            bar.close()
    stopping.restore(model)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
