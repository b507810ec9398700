"""Next-item objectives over a catalogue, as pure functions of hidden states and item vectors.

* :func:`full_softmax_ce`: cross-entropy of the true next item against *every* item (the
  "SASRec+" objective of Klenitskiy & Vasilev, RecSys 2023). The logits are computed a chunk of
  items at a time, forward and backward, so memory is bounded by ``rows x chunk`` instead of
  ``rows x catalogue``: a custom autograd function recomputes each chunk's softmax in the
  backward pass instead of keeping it.
* :func:`sampled_ce`: cross-entropy against the true item and ``k`` sampled negatives (sampled
  softmax; uniform negatives need no log-Q correction: it is the same constant for every item).
* :func:`gbce`: generalised binary cross-entropy with ``k`` negatives (gSASRec, Petrov &
  Macdonald 2023): the positive term raised to ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``,
  ``alpha = k / (n_items - 1)``, which calibrates the scores of a model trained on sampled
  negatives (``t = 0``: plain BCE; ``t = 1``: fully calibrated).

All three compute in float32 whatever the inputs' dtype (bf16 autocast included) and return the
mean over rows.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

#: items per chunk of :func:`full_softmax_ce` unless told
DEFAULT_CHUNK = 8192


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """``mean_r(logsumexp_i(h_r . w_i) - h_r . w_{t_r})`` with chunked forward and backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        h = hidden.float()
        w = weight.float()
        n_items = w.shape[0]
        lse = torch.full((h.shape[0],), -torch.inf, device=h.device)
        for s in range(0, n_items, chunk):
            lse = torch.logaddexp(lse, torch.logsumexp(h @ w[s : s + chunk].T, dim=1))
        positive = (h * w[target]).sum(1)
        ctx.save_for_backward(hidden, weight, target, lse)
        ctx.chunk = chunk
        return (lse - positive).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        hidden, weight, target, lse = ctx.saved_tensors
        h = hidden.float()
        w = weight.float()
        scale = grad.float() / h.shape[0]
        d_h = torch.zeros_like(h)
        d_w = torch.zeros_like(w)
        for s in range(0, w.shape[0], ctx.chunk):
            wc = w[s : s + ctx.chunk]
            p = torch.exp(h @ wc.T - lse[:, None])  # softmax over the whole catalogue, this chunk
            d_h += p @ wc
            d_w[s : s + ctx.chunk] = p.T @ h
        d_h -= w[target]
        d_w.index_add_(0, target, -h)
        d_h = (d_h * scale).to(hidden.dtype) if ctx.needs_input_grad[0] else None
        d_w = (d_w * scale).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return d_h, d_w, None, None


def full_softmax_ce(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """Mean cross-entropy of ``target`` (``(rows,)`` item indices) under a softmax over every item.

    ``hidden``: ``(rows, d)``; ``weight``: ``(n_items, d)`` item vectors (the logits are
    ``hidden @ weight.T``). Memory is ``rows x chunk`` floats, whatever the catalogue's size.
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    return _ChunkedSoftmaxCE.apply(hidden, weight, target.long(), int(chunk))


def _pos_neg_logits(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    h = hidden.float()
    pos = (h * weight[target].float()).sum(1)
    neg = torch.einsum("rd,rkd->rk", h, weight[negatives].float())
    return pos, neg


def sampled_ce(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of the true item against its row's ``negatives`` (``(rows, k)``)."""
    pos, neg = _pos_neg_logits(hidden, weight, target, negatives)
    logits = torch.cat([pos[:, None], neg], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(target, dtype=torch.long))


def gbce_beta(k: int, n_items: int, t: float) -> float:
    """gSASRec's exponent of the positive term for ``k`` negatives out of ``n_items`` items."""
    alpha = k / max(1, n_items - 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    negatives: torch.Tensor,
    t: float = 0.75,
) -> torch.Tensor:
    """Mean generalised BCE (gSASRec) of the true items and their rows' ``negatives``."""
    pos, neg = _pos_neg_logits(hidden, weight, target, negatives)
    beta = gbce_beta(negatives.shape[1], weight.shape[0], t)
    return -(beta * F.logsigmoid(pos) + F.logsigmoid(-neg).sum(1)).mean()
