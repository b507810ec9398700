"""Row-sparse optimisers: a batch touches a few rows of an embedding table, so only those rows move.

With dense optimisers every batch steps every row of every table (the moment decay of Adam
alone touches all of them), so an epoch costs ``ratings x table size``. A model that can give
its gradient by rows (a closed-form :class:`~reelrec.models.fitting.BatchGradient` in its plan:
MF), or whose embedding tables give sparse gradients from autograd, is trained instead by
:class:`RowAdam` or :class:`RowSGD`, which read and write only the rows in the batch: an epoch
then costs ``ratings x embedding_size``, whatever the number of users and movies.

:class:`RowAdam` is "lazy" Adam (the rule of ``torch.optim.SparseAdam`` and of the sparse Adam
of TensorFlow/Keras): a row's first and second moments decay only on the steps that touch it,
and the bias correction uses the global step count.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from reelrec.models.base import RowGrad


class _RowOptimizer(torch.optim.Optimizer):
    """Base: ``set_rows(grads)`` hands over a batch's row gradients, ``step()`` applies them.

    A ``torch.optim.Optimizer`` so the learning-rate schedulers work unchanged."""

    def __init__(self, params: Iterable[torch.nn.Parameter], defaults: dict[str, float]) -> None:
        super().__init__(list(params), defaults)
        self._pending: list[RowGrad] = []

    def set_rows(self, grads: list[RowGrad]) -> None:
        self._pending = grads

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._pending = []


class RowAdam(_RowOptimizer):
    """Adam on the rows a batch touches (see the module docstring)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, {"lr": lr, "beta1": betas[0], "beta2": betas[1], "eps": eps})
        self.step_count = 0

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        group = self.param_groups[0]
        lr, b1, b2, eps = group["lr"], group["beta1"], group["beta2"], group["eps"]
        self.step_count += 1
        t = self.step_count
        step_size = lr / (1.0 - b1**t)
        root_bc2 = (1.0 - b2**t) ** 0.5
        for param, rows, grad in self._pending:
            state = self.state[param]
            if not state:
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
            m = state["exp_avg"].index_select(0, rows).mul_(b1).add_(grad, alpha=1.0 - b1)
            v = state["exp_avg_sq"].index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
            state["exp_avg"].index_copy_(0, rows, m)
            state["exp_avg_sq"].index_copy_(0, rows, v)
            update = m.div_(v.sqrt_().div_(root_bc2).add_(eps))
            param.index_add_(0, rows, update, alpha=-step_size)
        self._pending = []


class RowSGD(_RowOptimizer):
    """SGD with (lazy) momentum on the rows a batch touches."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-2, momentum: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        group = self.param_groups[0]
        lr, mom = group["lr"], group["momentum"]
        for param, rows, grad in self._pending:
            if mom:
                state = self.state[param]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                grad = state["momentum_buffer"].index_select(0, rows).mul_(mom).add_(grad)
                state["momentum_buffer"].index_copy_(0, rows, grad)
            param.index_add_(0, rows, grad, alpha=-lr)
        self._pending = []
