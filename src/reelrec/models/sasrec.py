"""SASRec: a causal self-attention model of what a user watches next.

Each user's interactions, in time order (ties in file order), are a sequence; a causal
transformer (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018) reads it and
the hidden state at position ``t`` scores every item as the next one by its inner product with
the item's embedding (tied between input and output). Trained as "SASRec+" (Klenitskiy &
Vasilev, RecSys 2023): cross-entropy of the true next item against the *whole* catalogue at
every position (:func:`reelrec.models.losses.full_softmax_ce`, chunked so memory stays bounded);
on catalogues too large for that, sampled softmax or gBCE with many negatives.

* Sequences are the latest ``max_len`` (+1 for training) interactions, left-padded with the
  index ``n_items``; positions are learned and counted from the left of the padded window, so
  the latest interaction always sits at position ``max_len - 1``.
* Blocks are pre-LayerNorm (attention, then a GELU feed-forward), each with residual dropout;
  a query attends to earlier real items and to itself, never to padding.
* A saved run keeps each user's latest ``max_len`` training items (``history``), so a known
  user's list needs only the run. A new user *is* their sequence: :meth:`fold_in` reads the
  ratings in the order given (the service passes a profile's ratings in the order made); no
  retraining. The retrieval vectors are the last position's hidden state and the item embeddings.
* Scores rank items; they are not ratings (``predicts_ratings`` is False).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from reelrec.data.dataset import Dataset
from reelrec.models.base import ModelConfig, RatingModel
from reelrec.models.fitting import FitPlan, GradientSteps
from reelrec.models.losses import full_softmax_ce, gbce, sampled_ce
from reelrec.models.ranking import mask_keys
from reelrec.models.seqlinear import chronological

#: catalogues up to this size train with the full softmax when ``loss="auto"``
FULL_SOFTMAX_ITEMS = 100_000
#: users per block when hidden states are computed for scoring
SCORE_BLOCK = 256
#: cut-off of the validation NDCG that early stopping reads
VALIDATION_NDCG_K = 10


@torch.no_grad()
def next_item_ndcg(
    model: RatingModel, users: torch.Tensor, items: torch.Tensor, seen_keys: torch.Tensor, k: int = 10
) -> float:
    """Mean NDCG@``k`` of one held-out item per user (the last pair of each user in ``users``,
    ``items``), ranked over every item except the user's ``seen_keys`` (``user * n_items + item``)."""
    n = model.n_items
    users, items = users.long(), items.long()
    order = torch.argsort(users, stable=True)
    users, items = users[order], items[order]
    last = torch.ones_like(users, dtype=torch.bool)
    last[:-1] = users[1:] != users[:-1]
    users, items = users[last], items[last]
    if users.numel() == 0:
        return 0.0
    seen_keys = torch.unique(seen_keys)
    gains = torch.zeros(users.shape[0])
    for s in range(0, users.shape[0], SCORE_BLOCK):
        ub, ib = users[s : s + SCORE_BLOCK], items[s : s + SCORE_BLOCK]
        scores = mask_keys(model.score_users(ub).float(), ub, seen_keys, n)
        target = scores.gather(1, ib[:, None])
        rank = (scores > target).sum(1)  # 0-based rank of the held-out item
        hit = (rank < k) & torch.isfinite(target[:, 0])
        gains[s : s + SCORE_BLOCK] = torch.where(hit, 1.0 / torch.log2(rank.float() + 2.0), 0.0).cpu()
    return float(gains.mean())


class SASRecConfig(ModelConfig):
    """Hyperparameters of :class:`SASRec`. The defaults (with :attr:`SASRec.default_train`) are
    what scored best on the validation part of ML-100K leave-last (each user's latest training
    interaction, NDCG@10) among the settings in docs/benchmarks.md; never on a test set."""

    embedding_size: int = Field(64, ge=4, le=1024, description="width of item embeddings and hidden states")
    max_len: int = Field(100, ge=2, le=2048, description="interactions a sequence window holds")
    blocks: int = Field(2, ge=1, le=12, description="transformer blocks")
    heads: int = Field(1, ge=1, le=16, description="attention heads (must divide embedding_size)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on embeddings, attention and residuals")
    loss: Literal["auto", "softmax", "sampled", "gbce"] = Field(
        "auto",
        description="full-catalogue softmax; sampled softmax or gBCE over `negatives` items; "
        f"auto: softmax up to {FULL_SOFTMAX_ITEMS:,} items, sampled softmax beyond",
    )
    negatives: int = Field(256, ge=1, le=65536, description="negatives per position (sampled, gbce)")
    gbce_t: float = Field(0.75, ge=0, le=1, description="gBCE calibration (0: plain BCE)")
    chunk: int = Field(8192, ge=64, description="items per chunk of the full softmax")

    @model_validator(mode="after")
    def _heads_divide(self) -> SASRecConfig:
        if self.embedding_size % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide embedding_size ({self.embedding_size})")
        return self


class CausalBlock(nn.Module):
    """Pre-LayerNorm self-attention + feed-forward block over ``(batch, length, d)``."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.p = dropout
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = self.p if self.training else 0.0
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask, dropout_p=p)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ff(self.norm2(x)))


def padded_ranges(
    starts: np.ndarray, ends: np.ndarray, items: np.ndarray, length: int, pad: int
) -> np.ndarray:
    """``items[starts[r]:ends[r]]`` right-aligned in row ``r`` of a ``(rows, length)`` array filled
    with ``pad`` (each range at most ``length`` long)."""
    keep = ends - starts
    out = np.full((keep.shape[0], length), pad, dtype=np.int64)
    rows = np.repeat(np.arange(keep.shape[0]), keep)
    offset = np.arange(rows.shape[0]) - np.repeat(np.cumsum(keep) - keep, keep)
    out[rows, length - keep[rows] + offset] = items[np.repeat(starts, keep) + offset]
    return out


def left_padded(indptr: np.ndarray, items: np.ndarray, length: int, pad: int) -> np.ndarray:
    """Each CSR row's latest ``length`` entries, right-aligned in a ``(rows, length)`` array filled
    with ``pad`` (rows hold items oldest first)."""
    ends = indptr[1:]
    return padded_ranges(np.maximum(indptr[:-1], ends - length), ends, items, length, pad)


def training_windows(indptr: np.ndarray, items: np.ndarray, length: int, pad: int) -> np.ndarray:
    """Every row's history cut into windows of ``length + 1`` items from the latest backwards,
    consecutive windows sharing one item, so every interaction but a user's first is a target
    exactly once (a history longer than ``max_len`` is not cut short); left-padded."""
    counts = np.diff(indptr)
    n_win = np.where(counts >= 2, -(-(counts - 1) // length), 0)
    row = np.repeat(np.arange(counts.shape[0]), n_win)
    w = np.arange(row.shape[0]) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    ends = indptr[1:][row] - w * length
    starts = np.maximum(indptr[:-1][row], ends - (length + 1))
    return padded_ranges(starts, ends, items, length + 1, pad)


def ordered_csr(train: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Each user's training items in time order (ties in file order), as CSR."""
    order = chronological(train)
    indptr = np.zeros(train.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(train.user_index, minlength=train.n_users), out=indptr[1:])
    return indptr, train.item_index[order].astype(np.int64)


def user_sequences(train: Dataset, length: int, pad: int) -> np.ndarray:
    """``(n_users, length)``: each user's latest ``length`` training items in time order
    (ties in file order), left-padded with ``pad``."""
    return left_padded(*ordered_csr(train), length, pad)


class SASRec(RatingModel):
    """Causal self-attention next-item model; see the module docs."""

    name: ClassVar[str] = "sasrec"
    config_class: ClassVar[type[ModelConfig]] = SASRecConfig
    config: SASRecConfig
    validation_split: ClassVar[str] = "last"
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "model": {
            "embedding_size": {"choices": [64, 128, 256]},
            "max_len": {"choices": [50, 100, 200]},
            "blocks": {"choices": [1, 2, 3]},
            "dropout": {"low": 0.1, "high": 0.6},
        },
        "train": {
            "learning_rate": {"low": 5e-4, "high": 5e-3, "log": True},
            "batch_size": {"choices": [16, 32, 64, 128]},
        },
    }
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 200,
        "batch_size": 32,
        "learning_rate": 2e-3,
        "patience": 20,
        "refit": False,
    }

    def __init__(self, n_users: int, n_items: int, config: SASRecConfig | None = None) -> None:
        config = config or SASRecConfig()
        super().__init__(n_users, n_items, config)
        d = config.embedding_size
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=n_items)
        self.position = nn.Embedding(config.max_len, d)
        self.blocks = nn.ModuleList(
            CausalBlock(d, config.heads, config.dropout) for _ in range(config.blocks)
        )
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)
        nn.init.normal_(self.item_embedding.weight, std=d**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[n_items].zero_()
        self.register_buffer("history", torch.full((n_users, config.max_len), n_items, dtype=torch.long))
        self._train_seqs: torch.Tensor | None = None
        self._train_keys = torch.zeros(0, dtype=torch.long)

    # ------------------------------------------------------------------ network
    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return False

    @property
    def folds_in(self) -> bool:  # type: ignore[override]
        return True  # a new user is their sequence

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(batch, length, d)`` of left-padded item sequences ``(batch, length)``."""
        pad = self.n_items
        n = seqs.shape[1]
        d = self.config.embedding_size
        real = seqs != pad
        x = self.item_embedding(seqs) * math.sqrt(d)
        x = x + self.position.weight[self.config.max_len - n :][None]
        x = self.drop(x) * real[..., None]
        causal = torch.ones(n, n, dtype=torch.bool, device=seqs.device).tril()
        eye = torch.eye(n, dtype=torch.bool, device=seqs.device)
        mask = (causal & (real[:, None, :] | eye))[:, None]  # (batch, 1, query, key)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def item_weights(self) -> torch.Tensor:
        """The output (= input) embeddings of the real items, ``(n_items, d)``."""
        return self.item_embedding.weight[: self.n_items]

    def last_hidden(self, seqs: torch.Tensor) -> torch.Tensor:
        """The hidden state of the latest position of each sequence, in blocks of users."""
        out = [self.encode(seqs[s : s + SCORE_BLOCK])[:, -1] for s in range(0, seqs.shape[0], SCORE_BLOCK)]
        return torch.cat(out) if out else seqs.new_zeros((0, self.config.embedding_size), dtype=torch.float32)

    # ------------------------------------------------------------------ training
    def prepare(self, train: Dataset) -> None:
        """Every user's latest ``max_len`` items (for scoring) and their whole history in windows of
        ``max_len + 1`` (for training)."""
        super().prepare(train)
        length = self.config.max_len
        indptr, items = ordered_csr(train)
        device = self.history.device
        self.history.copy_(torch.from_numpy(left_padded(indptr, items, length, self.n_items)).to(device))
        windows = training_windows(indptr, items, length, self.n_items)
        self._train_seqs = torch.from_numpy(windows).to(device)
        keys = np.unique(train.user_index.astype(np.int64) * self.n_items + train.item_index)
        self._train_keys = torch.from_numpy(keys).to(device)

    def observe(self, history: Dataset) -> None:
        """Every user's input becomes their latest ``max_len`` items of ``history`` (training +
        validation part): the next item is predicted from all that came before it."""
        seqs = user_sequences(history, self.config.max_len, self.n_items)
        self.history.copy_(torch.from_numpy(seqs).to(self.history.device))

    def fit_plan(self, train: Dataset) -> FitPlan:
        """Gradient steps on the training windows (every user with two items or more; see
        :meth:`rows_loss`), after :meth:`prepare` built them."""
        assert self._train_seqs is not None, "prepare() first"
        return GradientSteps(rows=int(self._train_seqs.shape[0]), rows_loss=self.rows_loss)

    def loss_kind(self) -> str:
        """The objective this model trains with (``auto`` resolved by the catalogue's size)."""
        kind = self.config.loss
        if kind == "auto":
            kind = "softmax" if self.n_items <= FULL_SOFTMAX_ITEMS else "sampled"
        return kind

    def rows_loss(self, rows: torch.Tensor) -> torch.Tensor:
        """The next-item objective at every real position of a batch of training sequences."""
        assert self._train_seqs is not None, "prepare() first"
        seqs = self._train_seqs[rows.to(self._train_seqs.device)]
        inputs, targets = seqs[:, :-1], seqs[:, 1:]
        # on a GPU the transformer runs in bf16 (the losses compute in float32 whatever it gets)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=inputs.is_cuda):
            hidden = self.encode(inputs)
        real = (inputs != self.n_items) & (targets != self.n_items)
        h, t = hidden[real], targets[real]
        weight = self.item_weights()
        kind = self.loss_kind()
        if kind == "softmax":
            return full_softmax_ce(h, weight, t, self.config.chunk)
        negatives = torch.randint(0, self.n_items, (t.shape[0], self.config.negatives), device=t.device)
        if kind == "gbce":
            return gbce(h, weight, t, negatives, self.config.gbce_t)
        return sampled_ce(h, weight, t, negatives)

    @torch.no_grad()
    def validation_loss(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> float | None:
        """``1 - NDCG@10`` of each validation user's latest validation item, ranked over every item
        but the user's training items (the early-stopping criterion: what comes next)."""
        return 1.0 - next_item_ndcg(self, users, items, self._train_keys, k=VALIDATION_NDCG_K)

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.last_hidden(self.history[users.to(self.history.device)]) @ self.item_weights().T

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        unique, inverse = torch.unique(users, return_inverse=True)
        hidden = self.last_hidden(self.history[unique.to(self.history.device)])
        return (hidden[inverse] * self.item_weights()[items]).sum(1)

    @torch.no_grad()
    def fold_in(self, items: torch.Tensor, ratings: torch.Tensor, steps: int = 0) -> torch.Tensor:
        """A new user's scores from their items in the order given (oldest first)."""
        return (self.last_hidden(self._padded(items)) @ self.item_weights().T)[0]

    @torch.no_grad()
    def fold_in_vector(self, items: torch.Tensor, ratings: torch.Tensor) -> tuple[np.ndarray, float] | None:
        """A new user's retrieval vector: the last position's hidden state of their sequence."""
        hidden = self.last_hidden(self._padded(items))[0]
        return hidden.double().cpu().numpy(), 0.0

    def score_items_for_vector(self, vector: np.ndarray, offset: float, items: np.ndarray) -> np.ndarray:
        weights = self.item_weights().detach().double().cpu().numpy()
        return weights[np.asarray(items, dtype=np.int64)] @ vector + offset

    def _padded(self, items: torch.Tensor) -> torch.Tensor:
        """``items`` (oldest first) as one left-padded sequence of the latest ``max_len``."""
        seq = items.long()[-self.config.max_len :].to(self.history.device)
        padded = torch.full((1, self.config.max_len), self.n_items, dtype=torch.long, device=seq.device)
        padded[0, self.config.max_len - seq.shape[0] :] = seq
        return padded

    def item_vectors(self) -> torch.Tensor | None:
        return self.item_weights().detach()

    @torch.no_grad()
    def retrieval_vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        users = self.last_hidden(self.history).float().cpu().numpy()
        return users, self.item_weights().float().cpu().numpy()
