"""A blend of trained rating models: ``intercept + sum_k w_k * prediction_k``.

Built by :func:`reelrec.blend.blend_runs` from saved runs trained on the same split, with the
weights fitted on that split's validation part (which the members never trained on). The
blend holds its members as submodules, so its ``state_dict`` (member weights under
``members.K.``) and config (each member's name and config, the weights) make one ordinary,
self-contained run directory.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator
from torch import nn

from reelrec.errors import ConfigError
from reelrec.models.base import ModelConfig, RatingModel


class BlendConfig(ModelConfig):
    """Members (``{"name": ..., "config": {...}}``), one weight each, and the intercept."""

    members: list[dict[str, Any]] = Field(min_length=1)
    weights: list[float]
    intercept: float = 0.0

    @field_validator("members")
    @classmethod
    def _members(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for m in value:
            if set(m) != {"name", "config"} or m["name"] == "blend":
                raise ValueError("each member is {'name': a model name (not blend), 'config': {...}}")
        return value


class Blend(RatingModel):
    """A linear blend of rating models (not trainable by the Trainer; see ``reelrec blend``)."""

    name: ClassVar[str] = "blend"
    config_class: ClassVar[type[ModelConfig]] = BlendConfig
    trainable: ClassVar[bool] = False
    config: BlendConfig

    composite: ClassVar[bool] = True

    def __init__(
        self, n_users: int, n_items: int, config: BlendConfig, members: list[RatingModel] | None = None
    ) -> None:
        """``members``: one built model per ``config.members`` entry (``registry.build_model``
        builds them, so this module needs no registry)."""
        super().__init__(n_users, n_items, config)
        if len(config.weights) != len(config.members):
            raise ConfigError("a blend needs one weight per member")
        if members is None or len(members) != len(config.members):
            raise ConfigError("a blend is built with its members: use registry.build_model('blend', ...)")
        self.members = nn.ModuleList(members)
        if any(not m.predicts_ratings for m in self.members):
            raise ConfigError("only rating models can be blended (ranking scores have no common scale)")
        self.register_buffer("weights", torch.tensor(config.weights, dtype=torch.float32))

    def fit_closed_form(self, train: Any) -> None:
        raise ConfigError("a blend is built from trained runs: use `reelrec blend RUN RUN ... --out DIR`")

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        out = torch.full(users.shape, self.config.intercept, dtype=torch.float32, device=users.device)
        for w, m in zip(self.weights, self.members, strict=True):
            out = out + w * m(users, items).float()
        return out

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        out = torch.full((users.shape[0], self.n_items), self.config.intercept, device=users.device)
        for w, m in zip(self.weights, self.members, strict=True):
            out = out + w * m.score_users(users).float()
        return out

    def score_user(self, user: int) -> Any:
        out = self.config.intercept
        for w, m in zip(self.weights.tolist(), self.members, strict=True):
            out = out + w * m.score_user(user)
        return out

    def fold_in(self, items: torch.Tensor, ratings: torch.Tensor, steps: int = 30) -> torch.Tensor:
        """Each member folds the new user in its own way; the blend weighs their scores."""
        out = torch.full((self.n_items,), self.config.intercept, device=items.device)
        for w, m in zip(self.weights, self.members, strict=True):
            out = out + w * m.fold_in(items, ratings).float()
        return out

    def item_vectors(self) -> torch.Tensor | None:
        """The movie vectors of the heaviest member that has any."""
        order = sorted(range(len(self.members)), key=lambda k: -abs(float(self.weights[k])))
        for k in order:
            vectors = self.members[k].item_vectors()
            if vectors is not None:
                return vectors
        return None
