"""The protocol every reelrec model follows.

A model is an ``nn.Module`` that maps batches of dense (user, item) indices to predicted
ratings. It holds no training loop and does no I/O: it declares how it is fitted by the plan
:meth:`RatingModel.fit_plan` returns (:mod:`reelrec.models.fitting`: gradient steps, sweeps of
its own solver, or a closed form), and :class:`reelrec.training.Trainer`'s one loop runs it.
Everything a model needs at prediction time lives in its parameters and buffers, so
``state_dict`` + config is a complete, safetensors-friendly artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch.func import functional_call

from reelrec.data.dataset import Dataset
from reelrec.errors import ConfigError
from reelrec.models.fitting import ClosedForm, FitPlan, GradientSteps, RowGrad


def biased_retrieval_vectors(
    user_factors: torch.Tensor, item_factors: torch.Tensor, item_bias: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """``[p_u ; 1]`` and ``[q_i ; b_i]``: their inner product is ``p_u . q_i + b_i``, a biased
    factor model's score up to the per-user constant (``mu + b_u``)."""
    p = user_factors.detach().cpu().numpy()
    q = item_factors.detach().cpu().numpy()
    b_i = item_bias.detach().cpu().numpy().reshape(-1, 1)
    users = np.concatenate([p, np.ones((p.shape[0], 1), dtype=p.dtype)], axis=1)
    return users, np.concatenate([q, b_i.astype(q.dtype)], axis=1)


#: the most (user, item) pairs the default :meth:`RatingModel.score_users` feeds ``forward`` at once
SCORE_PAIRS = 1 << 18

__all__ = [
    "SCORE_PAIRS",
    "ModelConfig",
    "RatingModel",
    "RowGrad",
    "biased_retrieval_vectors",
    "coalesce_rows",
]


def coalesce_rows(index: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the gradient rows that share an index: ``(unique indices, summed rows)``."""
    rows, inverse = torch.unique(index, return_inverse=True)
    summed = torch.zeros((rows.shape[0], *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
    summed.index_add_(0, inverse, grad)
    return rows, summed


@dataclass(frozen=True)
class Pretrain:
    """A model to train first, inside the same fit, for another to start from
    (:meth:`RatingModel.pretraining`): its registry name and its settings (e.g. ``Pretrain("mf",
    {"embedding_size": 128})``). It trains with its own recipe, early-stopped, without a refit."""

    model: str
    params: dict[str, Any] = field(default_factory=dict)


class ModelConfig(BaseModel):
    """Base of every model's typed configuration (unknown fields are an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RatingModel(nn.Module):
    """Base class: ``forward(users, items) -> predicted ratings``.

    Subclasses set ``name`` and ``config_class``, and implement :meth:`forward`. They may
    override :meth:`penalty` (a regulariser computed on the batch), :meth:`score_users`
    (a faster full-catalogue scorer), :meth:`item_vectors` (for similar items) and, for
    closed-form models, :meth:`fit_closed_form` with ``trainable = False``.
    """

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    trainable: ClassVar[bool] = True
    #: True when the model predicts items without training ratings from their features
    predicts_cold_items: ClassVar[bool] = False
    #: True when the model predicts users without training ratings itself (e.g. from features)
    predicts_cold_users: ClassVar[bool] = False
    #: True when :meth:`average` merges several fitted models into one of the same kind
    averageable: ClassVar[bool] = False
    #: True for a model of models (a blend): built with ``members=`` by ``registry.build_model``
    composite: ClassVar[bool] = False
    #: False when :meth:`score_users` ranks by something other than the predicted rating
    #: (popularity: the training counts), though :meth:`forward` predicts ratings
    scores_are_ratings: ClassVar[bool] = True
    #: False for a reference model that ranks the catalogue alike for every user (global mean,
    #: the bias baseline, popularity): the quality floors a model must pass (the conformance
    #: suite, tests/test_conformance.py) are set so that such a model fails them
    personalised: ClassVar[bool] = True
    #: True when :meth:`fold_in` of a trained user's own training ratings gives back that user's
    #: trained scores exactly (a closed form the training itself ends on, or a model without
    #: per-user parameters); False when the fold-in approximates them (a fit of the user's own
    #: parameters against frozen item parameters that training moved together with them)
    fold_in_exact: ClassVar[bool] = False
    #: ``reelrec tune``'s search space for this model (``{"model": {field: spec}, "train": {...}}``,
    #: see :mod:`reelrec.tune`); empty: the table in :mod:`reelrec.tune`, if it has one
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}
    #: how a run carves this model's validation part from its training part: ``random`` rows,
    #: or ``last``, each user's latest interaction (sequence models: validated on what comes next)
    validation_split: ClassVar[str] = "random"
    #: TrainConfig values this model trains best with (chosen on validation data); a user's
    #: explicit settings override them
    default_train: ClassVar[dict[str, Any]] = {}

    @classmethod
    def train_defaults(
        cls, n_ratings: int | None = None, config: ModelConfig | None = None
    ) -> dict[str, Any]:
        """The TrainConfig values this model trains best with on ``n_ratings`` training ratings
        with ``config`` (``None``: the default config): :attr:`default_train`, adjusted by models
        whose best recipe changes with the data's size or the config. A user's explicit settings
        override them."""
        return dict(cls.default_train)

    @classmethod
    def memory_estimate(cls, n_users: int, n_items: int, n_ratings: int, config: ModelConfig) -> int:
        """Bytes this model needs to train on data of this shape, beyond the ratings themselves
        (parameters and optimiser state by default: a few float32 tables); models with
        ``n_items x n_items`` or ``n_items x n_users`` matrices override it, so training can refuse
        up front instead of running out of memory half-way."""
        return 0

    #: what :meth:`memory_estimate` counts, for the refusal message
    scale_note: ClassVar[str] = "its parameters"
    #: the way around a refusal at scale, for the message
    scale_alternative: ClassVar[str] = "Use mf, bpr or bias for data of this size."

    @classmethod
    def check_limits(cls, n_users: int, n_items: int, n_ratings: int, config: ModelConfig) -> None:
        """Raise a one-line ``ConfigError`` when training on data of this shape would exceed a
        limit of the model other than memory (e.g. hours of work); the default has none."""

    def __init__(self, n_users: int, n_items: int, config: ModelConfig) -> None:
        super().__init__()
        if n_users < 1 or n_items < 1:
            raise ValueError("a model needs at least one user and one item")
        self.n_users = n_users
        self.n_items = n_items
        self.config = config
        self.register_buffer("global_mean", torch.zeros(()))

    # ------------------------------------------------------------------ data hooks
    @classmethod
    def configure(cls, values: dict[str, Any], train: Dataset) -> dict[str, Any]:
        """Complete config values that depend on the training data (e.g. softmax levels)."""
        return values

    def prepare(self, train: Dataset) -> None:
        """Set data-dependent buffers (the global mean) before training."""
        self.global_mean.fill_(float(train.rating.mean()))

    @classmethod
    def pretrained_runs(cls, config: ModelConfig) -> dict[str, str]:
        """Saved runs this config starts from, by role (e.g. ``{"mf": path}``); loaded by
        :mod:`reelrec.training.pretrained` and handed to :meth:`init_from`. None by default."""
        return {}

    @classmethod
    def pretraining(cls, config: ModelConfig) -> dict[str, Pretrain]:
        """Models to pre-train inside the same fit, by role, each a :class:`Pretrain` (e.g.
        ``{"mf": Pretrain("mf", {"embedding_size": 128})}``: an MF with 128 factors);
        :mod:`reelrec.training.pretrained` trains them and hands them to :meth:`init_from`.
        None by default."""
        return {}

    def init_from(self, sources: dict[str, RatingModel]) -> None:
        """Start from the weights of ``sources`` (by role: see :meth:`pretrained_runs` and
        :meth:`pretraining`); called after :meth:`prepare`, so they replace what it set. Pure:
        no I/O. Raises ``ConfigError`` when a source does not fit."""
        if sources:
            raise ConfigError(f"{self.name} cannot start from pre-trained models ({', '.join(sources)})")

    def observe(self, history: Dataset) -> None:
        """Take ``history`` (a run's training part and its validation part) as every user's input
        at scoring time, without changing a weight: for models that read a user's interactions
        when they score (a sequence model's input is the sequence), so the validation part a run
        held out for early stopping is part of what the model reads. The default does nothing."""

    def fit_closed_form(self, train: Dataset) -> None:
        """Fit without gradient descent (only for ``trainable = False`` models)."""
        raise NotImplementedError(f"{self.name} is trained by the Trainer")

    def fit_plan(self, train: Dataset) -> FitPlan:
        """How the Trainer fits this model on ``train`` (called once per fit, after
        :meth:`prepare` and :meth:`init_from`): :class:`~reelrec.models.fitting.ClosedForm`
        (:meth:`fit_closed_form`) for ``trainable = False`` models, otherwise
        :class:`~reelrec.models.fitting.GradientSteps` with autograd on :meth:`training_loss`.
        Models that train on rows of their own (AutoRec), have a closed-form gradient (MF) or
        their own solver (ALS: :class:`~reelrec.models.fitting.Sweeps`) return their plan."""
        if not self.trainable:
            return ClosedForm(partial(self.fit_closed_form, train))
        return GradientSteps()

    @property
    def predicts_ratings(self) -> bool:
        """False for ranking models whose output is an interaction score, not a rating."""
        return True

    @property
    def ranks_by_rating(self) -> bool:
        """True when the catalogue scores are predicted ratings: shown clipped to the scale, and
        the novelty knob shifts them in rating units (not for ranking models, nor popularity)."""
        return self.predicts_ratings and self.scores_are_ratings

    @property
    def predicts_levels(self) -> bool:
        """True when :meth:`predict_level` gives each pair's most probable rating level itself
        (a softmax output head) rather than its predicted rating rounded to a level."""
        return False

    @property
    def folds_in(self) -> bool:
        """True when :meth:`fold_in` can score the catalogue for a new user from ratings: the
        default fit of the user's own rows needs a rating model; ranking models that fold in
        (history-based ones) say so."""
        return self.predicts_ratings

    def validation_loss(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> float | None:
        """A model-specific early-stopping criterion (lower is better); ``None``: validation RMSE."""
        return None

    @classmethod
    def average(cls, models: list[RatingModel]) -> RatingModel:
        """One model whose predictions are the mean of ``models``' predictions (fitted models of
        this class on the same users and items); only for classes with ``averageable = True``."""
        raise NotImplementedError(f"{cls.name} cannot merge several models into one")

    # ------------------------------------------------------------------ prediction
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Regularisation term added to the batch loss (default: none)."""
        return torch.zeros((), device=users.device)

    def training_loss(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """The objective the Trainer minimises: mean squared error plus :meth:`penalty`."""
        pred = self(users, items)
        return torch.mean((pred - ratings) ** 2) + self.penalty(users, items)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user in ``users``: shape ``(len(users), n_items)``.

        For rating models the score is the predicted rating. The default evaluates
        :meth:`forward` on the cartesian product, at most :data:`SCORE_PAIRS` (user, item) pairs
        at a time, so a network's activations stay bounded whatever the catalogue and block of
        users (537 ML-25M users x 62k movies through an MLP would otherwise hold ~50 GB);
        factorisation models override it with a single matrix product.
        """
        n, m = users.shape[0], self.n_items
        out = torch.empty(n, m, device=users.device)
        step = max(1, min(m, SCORE_PAIRS))  # items per piece
        rows = max(1, SCORE_PAIRS // step)  # users per piece
        for s in range(0, n, rows):
            block = users[s : s + rows]
            for t in range(0, m, step):
                items = torch.arange(t, min(m, t + step), device=users.device)
                u = block.repeat_interleave(items.shape[0])
                i = items.repeat(block.shape[0])
                out[s : s + block.shape[0], t : t + items.shape[0]] = self(u, i).reshape(block.shape[0], -1)
        return out

    @torch.no_grad()
    def score_user(self, user: int) -> np.ndarray:
        """Scores of every item for one user, as a float64 numpy array (the serving path);
        factorisation models override it with a single numpy matrix-vector product."""
        users = torch.tensor([int(user)], device=self.global_mean.device)
        return self.score_users(users)[0].float().cpu().numpy().astype(np.float64)

    def score_items(self, user: int, items: np.ndarray) -> np.ndarray:
        """``forward`` on one user's pairs with some ``items`` (dense indices), as float64 (the
        large-catalogue serving path scores its few candidates so); factorisation models
        override it with numpy on the weights."""
        device = self.global_mean.device
        index = torch.as_tensor(np.asarray(items, dtype=np.int64), device=device)
        with torch.no_grad():
            return self(torch.full_like(index, int(user)), index).double().cpu().numpy()

    def item_vectors(self) -> torch.Tensor | None:
        """One vector per item for similarity search, or ``None`` when the model has none."""
        return None

    def retrieval_vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(user vectors, item vectors)`` whose inner product ranks items exactly as the model
        does for each user (up to a per-user constant), for approximate nearest-neighbour
        retrieval; ``None`` when the model's score is not an inner product."""
        return None

    # ------------------------------------------------------------------ new users
    def fold_in_penalty(self, n: int) -> tuple[float, float]:
        """L2 weights ``(on user vectors, on user biases)`` of the fold-in objective for a user
        with ``n`` ratings: the total penalty such a user carries over one training epoch.
        Models with a per-user penalty override it; the default is a light ``0.05 * n``."""
        return 0.05 * n, 0.05 * n

    def _user_state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The per-user parameters and buffers (top-level modules named ``user_*`` with one row
        per user): the representation a new user needs, as one-row starting values.

        Parameters start at the mean trained row (an average user); buffers at zeros (a missing
        side feature) or ``True`` for boolean flags (the new user's own vector is used)."""
        params: dict[str, torch.Tensor] = {}
        buffers: dict[str, torch.Tensor] = {}
        for name, p in self.named_parameters():
            if name.startswith("user_") and p.dim() >= 1 and p.shape[0] == self.n_users:
                params[name] = p.detach().mean(0, keepdim=True).clone()
        for name, b in self.named_buffers():
            if (
                name.startswith("user_")
                and b.dim() >= 1
                and b.shape[0] == self.n_users
                and "reg_weight" not in name
            ):
                row = torch.ones_like(b[:1]) if b.dtype == torch.bool else torch.zeros_like(b[:1])
                buffers[name] = row
        return params, buffers

    def fold_in_vector(self, items: torch.Tensor, ratings: torch.Tensor) -> tuple[np.ndarray, float] | None:
        """A new user's retrieval vector (the user side of :meth:`retrieval_vectors`) and the
        constant its inner products are offset by, so that :meth:`fold_in`'s score of item ``i``
        is ``vector . item_vector_i + offset``; ``None`` (the default) when the fold-in has no
        such form. The large-catalogue path of a new user's list ranks from it."""
        return None

    def score_items_for_vector(self, vector: np.ndarray, offset: float, items: np.ndarray) -> np.ndarray:
        """The scores of some ``items`` for a folded-in user given by :meth:`fold_in_vector`
        (float64): ``vector . item_vector + offset`` on the model's own retrieval vectors."""
        raise NotImplementedError(f"model {self.name!r} has no fold-in vector")

    def fold_in(self, items: torch.Tensor, ratings: torch.Tensor, steps: int = 30) -> torch.Tensor:
        """Scores of every item for a *new* user described only by ``ratings`` of ``items``.

        The trained model stays frozen. The new user's own parameters (every ``user_*`` table,
        one row) are fitted by a few L-BFGS steps on the squared error of the given ratings plus
        :meth:`fold_in_penalty`; models with a closed form (MF, the bias baseline) override this.
        A model without per-user parameters (popularity, global mean) scores everyone alike.
        """
        was_training = self.training
        self.eval()
        try:
            start, fixed = self._user_state()
            if not start:
                with torch.no_grad():
                    return self.score_users(torch.zeros(1, dtype=torch.long, device=items.device))[0]
            frozen = {name: p.detach() for name, p in self.named_parameters() if name not in start}
            free = {name: v.clone().requires_grad_(True) for name, v in start.items()}
            n = int(items.shape[0])
            lam_vec, lam_bias = self.fold_in_penalty(n)
            zeros = torch.zeros(n, dtype=torch.long, device=items.device)
            target = ratings.float()

            def objective() -> torch.Tensor:
                pred = functional_call(self, ({**frozen, **free}, fixed), (zeros, items))
                loss = ((pred - target) ** 2).sum()
                for name, v in free.items():
                    lam = lam_bias if "bias" in name else lam_vec
                    loss = loss + lam * (v * v).sum()
                return loss

            opt = torch.optim.LBFGS(
                list(free.values()), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe"
            )

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = objective()
                loss.backward()
                return loss

            with torch.enable_grad():
                opt.step(closure)
            with torch.no_grad():
                all_items = torch.arange(self.n_items, device=items.device)
                users = torch.zeros(self.n_items, dtype=torch.long, device=items.device)
                params = {**frozen, **{k: v.detach() for k, v in free.items()}}
                return functional_call(self, (params, fixed), (users, all_items))
        finally:
            self.train(was_training)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config.model_dump(),
            "parameters": int(sum(p.numel() for p in self.parameters())),
        }
