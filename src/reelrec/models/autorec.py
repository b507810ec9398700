"""Item-based AutoRec (I-AutoRec; Sedhain, Menon, Sanner and Xie, WWW 2015).

Each item ``i`` is represented by its vector of training ratings over all users
``r_i ∈ R^{n_users}`` (0 where a user did not rate it). An autoencoder maps it to a code
``h_i = sigmoid(V r_i + b)`` and reconstructs ``W h_i + c``; only observed entries enter the
loss, plus ``reg / 2 * (||V||² + ||W||²)``. The prediction for ``(u, i)`` is
``W[u] · h_i + c[u]``: the decoder rows are user vectors and the codes item vectors, so a
trained AutoRec is a factorisation model with item factors computed from the ratings.

How it fits reelrec:

* :meth:`AutoRec.prepare` builds the dense item × user training matrix as a non-persistent
  buffer (ML-1M: 3706 × 6040 float32, 90 MB); it is a training-time detail and is not saved.
* Training walks item rows, not (user, item) triples: the model's plan
  (:meth:`AutoRec.fit_plan`: :class:`~reelrec.models.fitting.GradientSteps` with ``rows`` and
  :meth:`rows_loss`) says so, and early stopping, refit, schedules, history and seeds are the
  shared Trainer's.
* The item codes ``H`` (n_items × code_size) are a saved buffer, recomputed from the training
  matrix whenever the model enters eval mode after weights changed. Prediction needs only
  ``H``, ``W`` and ``c``: :meth:`score_users` is one matrix product, like MF.
* :meth:`fold_in` gives a new user a decoder row in closed form (ridge on the codes of the
  rated items), so the service can recommend to users who were not in training.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import AliasChoices, Field
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig, RatingModel
from reelrec.models.fitting import FitPlan, GradientSteps
from reelrec.models.regularisation import baseline_biases

#: largest dense training matrix (users × items entries) AutoRec builds (2 GB of float32)
MAX_DENSE_ENTRIES = 500_000_000
#: rows of the training matrix encoded at once when the codes are refreshed
CODE_CHUNK = 1024
#: the default L2 weight for 100,000 training ratings; it grows with the square root of the count
#: (best by validation RMSE: ~100 on ML-100K and ml-latest-small, ~300 on ML-1M)
REG_PER_100K = 100.0


def default_reg(n_ratings: float) -> float:
    """The L2 weight ``reg`` used when the config leaves it open, for ``n_ratings`` training ratings."""
    return round(REG_PER_100K * math.sqrt(max(n_ratings, 1.0) / 100_000), 1)


class AutoRecConfig(ModelConfig):
    """Hyperparameters of :class:`AutoRec`.

    The defaults were chosen by validation RMSE (5% of the training part, seed 42; the test part
    never looked at) on ML-1M, ML-100K and ml-latest-small ``holdout90`` and ML-100K ``u1``
    with ``AutoRec.default_train`` (Adam lr 1e-3, 64 items per batch, plateau schedule,
    patience 10): 500 sigmoid units as in the paper; plain L2 overfits within ~10 epochs at any
    ``reg`` because an observed rating is in its own input, so half of the input ratings are
    hidden in training (``input_dropout=0.5``; ML-1M validation RMSE at reg 100: 0.8429 without,
    0.8391 with it; 0.8316 at reg 300 with the plateau schedule); ``reg`` grows with the square
    root of the training size (best ~300 on ML-1M, ~100 on ML-100K). See docs/benchmarks.md.
    """

    code_size: int = Field(
        500,
        ge=1,
        le=16384,
        validation_alias=AliasChoices("code_size", "hidden"),
        description="units of the item code h_i (formerly hidden, which elsewhere lists MLP layer sizes)",
    )
    reg: float | None = Field(
        None,
        ge=0,
        description="lambda of the paper: the objective is sum of squared errors over observed "
        "entries + reg/2 * (||V||^2 + ||W||^2); None: 100 * sqrt(n_training_ratings / 100000), "
        "filled in from the training data",
    )
    activation: Literal["sigmoid", "identity", "relu", "tanh"] = Field(
        "sigmoid", description="activation of the code (the paper's g)"
    )
    output_bias_init: Literal["user_mean", "global_mean", "zero"] = Field(
        "user_mean",
        description="start the output bias c at each user's (shrunk) mean rating, the global mean, or 0",
    )
    input_dropout: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="during training, hide each observed input rating with this probability (the "
        "loss still covers it), so the network cannot just copy an input to its own output",
    )
    fold_in_reg: float | None = Field(
        None,
        ge=0,
        description="ridge weight on a new user's decoder row in fold_in "
        "(None: reg / 2, the training penalty)",
    )


_ACTIVATIONS = {"sigmoid": torch.sigmoid, "identity": lambda x: x, "relu": torch.relu, "tanh": torch.tanh}


class AutoRec(RatingModel):
    """I-AutoRec; see the module docs and :class:`AutoRecConfig`."""

    name: ClassVar[str] = "autorec"
    config_class: ClassVar[type[ModelConfig]] = AutoRecConfig
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 100,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "lr_schedule": "plateau",
        "patience": 10,
        "refit": False,
    }
    config: AutoRecConfig

    def __init__(self, n_users: int, n_items: int, config: AutoRecConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or AutoRecConfig())
        k = self.config.code_size
        self.encoder = nn.Linear(n_users, k)  # V, b
        self.decoder = nn.Linear(k, n_users)  # W (one row per user), c
        # the item codes: all prediction needs besides the decoder
        self.register_buffer("codes", torch.zeros(n_items, k))
        # the training matrix (items x users, 0 = unobserved): training only, never saved
        self.register_buffer("ratings_matrix", torch.zeros(0), persistent=False)
        self.register_buffer("observed", torch.zeros(0, dtype=torch.bool), persistent=False)
        self.register_buffer("n_train_ratings", torch.zeros(()))
        self._codes_stale = False

    # ------------------------------------------------------------------ training
    @classmethod
    def configure(cls, values: dict[str, Any], train: Dataset) -> dict[str, Any]:
        """Fill in ``reg`` from the number of training ratings when it is not given."""
        values = dict(values)
        if values.get("reg") is None:
            values["reg"] = default_reg(len(train))
        return values

    @property
    def reg(self) -> float:
        """The L2 weight in use: the config's, or the default for the training-set size."""
        return self.config.reg if self.config.reg is not None else default_reg(float(self.n_train_ratings))

    scale_note: ClassVar[str] = "the dense item x user training matrix, its mask and a decoded copy"
    scale_alternative: ClassVar[str] = "Use mf or hybrid for data of this size."

    @classmethod
    def memory_estimate(cls, n_users: int, n_items: int, n_ratings: int, config: ModelConfig) -> int:
        return 9 * n_users * n_items  # float32 ratings + bool mask + float32 reconstruction

    def prepare(self, train: Dataset) -> None:
        """The dense item × user training matrix, the output-bias start and fresh codes."""
        super().prepare(train)
        if self.n_users * self.n_items > MAX_DENSE_ENTRIES:
            raise ConfigError(
                f"autorec holds the {self.n_items} x {self.n_users} training matrix densely; "
                f"that is over its limit of {MAX_DENSE_ENTRIES:,} entries"
            )
        dev = self.global_mean.device
        r = torch.zeros(self.n_items, self.n_users, device=dev)
        items = torch.as_tensor(train.item_index, dtype=torch.long, device=dev)
        users = torch.as_tensor(train.user_index, dtype=torch.long, device=dev)
        r[items, users] = torch.as_tensor(train.rating, dtype=torch.float32, device=dev)
        mask = torch.zeros(self.n_items, self.n_users, dtype=torch.bool, device=dev)
        mask[items, users] = True
        self.ratings_matrix, self.observed = r, mask
        self.n_train_ratings.fill_(float(len(train)))
        init = self.config.output_bias_init
        with torch.no_grad():
            if init == "global_mean":
                self.decoder.bias.fill_(float(self.global_mean))
            elif init == "user_mean":
                mu, b_u, _ = baseline_biases(train, self.n_users, self.n_items)
                self.decoder.bias.copy_(torch.as_tensor(mu + b_u, dtype=torch.float32, device=dev))
            else:
                self.decoder.bias.zero_()
        self._codes_stale = True
        self.refresh_codes()

    def fit_plan(self, train: Dataset) -> FitPlan:
        """Gradient steps on the item rows of the training matrix (see :meth:`rows_loss`)."""
        return GradientSteps(rows=self.n_items, rows_loss=self.rows_loss)

    def _encode(self, rows: torch.Tensor) -> torch.Tensor:
        return _ACTIVATIONS[self.config.activation](self.encoder(rows))

    def rows_loss(self, rows: torch.Tensor) -> torch.Tensor:
        """The paper's objective on a batch of item rows, scaled to a per-rating mean.

        ``SSE(batch) * n_items / len(batch) + reg/2 * ||θ||²``, all divided by the number of
        training ratings: an unbiased estimate of the full objective over ``n_ratings``, so the
        reported training loss reads like an MSE and ``reg`` means what it means in the paper.
        """
        self._codes_stale = True
        cfg = self.config
        r = self.ratings_matrix[rows]
        x = nn.functional.dropout(r, cfg.input_dropout) if cfg.input_dropout else r
        pred = self.decoder(self._encode(x))
        sse = torch.sum(torch.where(self.observed[rows], pred - r, torch.zeros((), device=r.device)) ** 2)
        n = self.n_train_ratings
        loss = sse * (self.n_items / rows.shape[0]) / n
        if self.reg:
            norms = self.encoder.weight.pow(2).sum() + self.decoder.weight.pow(2).sum()
            loss = loss + self.reg / 2 * norms / n
        return loss

    @torch.no_grad()
    def refresh_codes(self) -> None:
        """Recompute the item codes from the training matrix (a no-op once it is dropped)."""
        r = self.ratings_matrix
        if not r.numel():
            return
        for s in range(0, self.n_items, CODE_CHUNK):
            self.codes[s : s + CODE_CHUNK] = self._encode(r[s : s + CODE_CHUNK])
        self._codes_stale = False

    def train(self, mode: bool = True) -> AutoRec:
        """As ``nn.Module.train``; entering eval mode after weight updates refreshes the codes."""
        super().train(mode)
        if not mode and self._codes_stale:
            self.refresh_codes()
        return self

    # ------------------------------------------------------------------ prediction
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        w = self.decoder.weight[users]
        return (w * self.codes[items]).sum(-1) + self.decoder.bias[users]

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.decoder.weight[users] @ self.codes.T + self.decoder.bias[users].unsqueeze(-1)

    @torch.no_grad()
    def fold_in(self, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """Scores of every item for a *new* user described only by ``ratings`` of ``items``.

        The model stays frozen; the user's decoder row ``w`` and output bias ``c`` are the exact
        minimiser of the training objective restricted to that user:
        ``sum_i (r_i - w · h_i - c)² + reg/2 * ||w||²`` (``c`` unpenalised, as in training),
        a ridge regression on the codes of the rated items.
        """
        cfg = self.config
        lam = self.reg / 2 if cfg.fold_in_reg is None else cfg.fold_in_reg
        h = self.codes[items].double()
        n = h.shape[0]
        x = torch.cat([h, torch.ones(n, 1, dtype=h.dtype, device=h.device)], dim=1)
        diag = torch.full((x.shape[1],), max(lam, 1e-6), dtype=h.dtype, device=h.device)
        diag[-1] = 1e-6
        w = torch.linalg.solve(x.T @ x + torch.diag(diag), x.T @ ratings.double())
        return (self.codes.double() @ w[:-1] + w[-1]).float()

    def item_vectors(self) -> torch.Tensor:
        """The item codes, centred (sigmoid codes share a large common component)."""
        return (self.codes - self.codes.mean(0, keepdim=True)).detach()
