"""Adam's fused step without ``torch.optim``'s machinery.

``torch.optim.Adam(fused=True)`` steps every parameter in one multi-tensor kernel
(``torch._fused_adam_``), but constructing any ``torch.optim`` optimizer imports
``torch._dynamo`` (0.8 s on the 2-core VM, once per process: 5% of a whole `reelrec train
--model mf` on ML-1M) and its ``step`` wraps the kernel in about 0.13 ms of Python per batch (8%
of an MF epoch). :class:`FusedAdam` keeps the same per-parameter state (``exp_avg``,
``exp_avg_sq`` and a float32 ``step`` tensor on the parameter's device, created at a parameter's
first gradient) and calls the same kernel with the same arguments, so its updates are
bit-for-bit those of ``torch.optim.Adam(params, lr, fused=True)``
(``tests/test_rows.py::test_fused_adam_matches_torch``). The Trainer uses it for Adam with a
constant learning rate; schedules need a real ``torch.optim.Optimizer`` and keep torch's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class FusedAdam:
    """``torch.optim.Adam(params, lr, betas, eps, weight_decay, fused=True)``'s step; see the module."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = list(params)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        #: the ``torch.optim`` shape the Trainer reads the learning rate from
        self.param_groups: list[dict[str, Any]] = [{"lr": lr, "params": self.params}]
        self.state: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every parameter that has a gradient (the others keep their state)."""
        groups: dict[tuple[torch.device, torch.dtype], list[list[torch.Tensor]]] = {}
        for p in self.params:
            if p.grad is None:
                continue
            if id(p) not in self.state:
                self.state[id(p)] = (
                    torch.zeros_like(p, memory_format=torch.preserve_format),
                    torch.zeros_like(p, memory_format=torch.preserve_format),
                    torch.zeros((), dtype=torch.float32, device=p.device),
                )
            exp_avg, exp_avg_sq, step = self.state[id(p)]
            lists = groups.setdefault((p.device, p.dtype), [[], [], [], [], []])
            for bucket, t in zip(lists, (p, p.grad, exp_avg, exp_avg_sq, step), strict=True):
                bucket.append(t)
        lr = float(self.param_groups[0]["lr"])
        beta1, beta2 = self.betas
        for params, grads, exp_avgs, exp_avg_sqs, steps in groups.values():
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=self.weight_decay,
                eps=self.eps,
                amsgrad=False,
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
