"""Safe persistence of a :class:`~reelrec.recommender.Recommender` as a run directory.

Layout (schema version 1)::

    RUN_DIR/
      config.json          model name + config, training config, dataset source, split, scale
      weights.safetensors  the model's state_dict (tensors only: no code, no pickle)
      index.safetensors    seen-items CSR, per-user/item training counts, fallback biases,
                           class thresholds (runs trained with decode="thresholds")
      vocab.json           raw user and item ids, in dense-index order
      items.json           title, year and genres per item (when the data has them)
      metrics.json         test metrics measured at training time
      history.json         per-epoch training history
      manifest.json        schema version and the sha256 + size of every file above

Loading checks the manifest first: a missing, extra-listed, resized or altered file, or an
unknown schema version, is refused with one line saying what is wrong. Nothing is unpickled
and no code from the directory runs. Saving writes into a temporary sibling directory and
renames it into place (:mod:`reelrec.safeio`), so a crash never leaves a half-written run; an
existing run is replaced only with ``overwrite``, and a folder that is not a reelrec run (no
manifest, or files the manifest does not list) never is.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reelrec._files import sha256_file
from reelrec._version import __version__
from reelrec.data.dataset import RatingScale, Vocabulary
from reelrec.errors import ArtifactError, ReelrecError
from reelrec.models.base import RatingModel
from reelrec.models.registry import build_model
from reelrec.safeio import RUN_MANIFEST, check_run_target, swap_in_dir, temp_dir
from reelrec.training.trainer import TrainConfig

SCHEMA_VERSION = 1
MANIFEST = RUN_MANIFEST
REQUIRED = (
    "config.json",
    "weights.safetensors",
    "index.safetensors",
    "vocab.json",
    "metrics.json",
    "history.json",
)


@dataclass
class RunState:
    """Everything a run directory holds, typed: what :meth:`Recommender.save` hands to
    :func:`save_state` and what :func:`load_state` gives :meth:`Recommender.load` to build itself
    from (this module never imports the recommender)."""

    model: RatingModel
    users: Vocabulary
    items: Vocabulary
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    user_counts: np.ndarray
    item_counts: np.ndarray
    fallback_mean: float
    fallback_user_bias: np.ndarray
    fallback_item_bias: np.ndarray
    scale: RatingScale
    seen_ratings: np.ndarray | None = None
    #: cut points between the rating levels for exact-match classes (``decode = "thresholds"``)
    class_thresholds: np.ndarray | None = None
    item_info: pd.DataFrame | None = None
    train_config: TrainConfig | None = None
    #: the run's record (dataset, split, seed, protocol, side data, ...) beside model and training
    meta: dict[str, Any] = field(default_factory=dict)
    #: the training history (``TrainResult.to_json()``), written to ``history.json``
    history: dict[str, Any] | None = None
    #: on load: the whole ``config.json``
    config: dict[str, Any] = field(default_factory=dict)


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None, recursively; numpy scalars to Python."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable JSON ({exc})") from None


def _items_json(state: RunState) -> dict[str, Any] | None:
    info: pd.DataFrame | None = state.item_info
    if info is None:
        return None

    def col(name: str) -> list[Any]:
        if name not in info.columns:
            return [None] * len(info)
        values = info[name].astype(object).where(info[name].notna(), None).tolist()
        return [int(v) if name == "year" and v is not None else v for v in values]

    return {"title": col("title"), "year": col("year"), "genres": col("genres")}


def check_target(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse a run-directory target that would destroy something (call before a long training).

    See :func:`reelrec.safeio.check_run_target`: only a reelrec run (with its manifest, holding
    nothing else) is ever replaced, and only with ``overwrite``.
    """
    return check_run_target(path, overwrite)


def save_state(
    state: RunState,
    path: str | os.PathLike[str],
    *,
    metrics: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``state`` to run directory ``path`` atomically; see the module docs for the layout."""
    target = check_target(path, overwrite)
    tmp = temp_dir(target)
    try:
        model = state.model
        config = {
            "schema_version": SCHEMA_VERSION,
            "reelrec_version": __version__,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": {"name": model.name, "config": model.config.model_dump()},
            "train": state.train_config.model_dump() if state.train_config is not None else None,
            "shape": {"n_users": model.n_users, "n_items": model.n_items},
            "scale": {"low": state.scale.low, "high": state.scale.high, "step": state.scale.step},
            "fallback_mean": state.fallback_mean,
            **state.meta,
        }
        _write_json(tmp / "config.json", config)
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "weights.safetensors"))
        index = {
            "seen_indptr": torch.as_tensor(state.seen_indptr, dtype=torch.int64),
            "seen_indices": torch.as_tensor(state.seen_indices, dtype=torch.int64),
            "user_counts": torch.as_tensor(state.user_counts, dtype=torch.int64),
            "item_counts": torch.as_tensor(state.item_counts, dtype=torch.int64),
            "fallback_user_bias": torch.as_tensor(state.fallback_user_bias, dtype=torch.float32),
            "fallback_item_bias": torch.as_tensor(state.fallback_item_bias, dtype=torch.float32),
        }
        if state.seen_ratings is not None:
            index["seen_ratings"] = torch.as_tensor(state.seen_ratings, dtype=torch.float32)
        if state.class_thresholds is not None:
            index["class_thresholds"] = torch.as_tensor(state.class_thresholds, dtype=torch.float64)
        save_file(index, str(tmp / "index.safetensors"))
        _write_json(tmp / "vocab.json", {"users": state.users.to_json(), "items": state.items.to_json()})
        items = _items_json(state)
        if items is not None:
            _write_json(tmp / "items.json", items)
        _write_json(tmp / "metrics.json", metrics or {})
        _write_json(tmp / "history.json", state.history if state.history is not None else {"history": []})
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "reelrec_version": __version__,
            "files": {
                name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in files
            },
        }
        _write_json(tmp / MANIFEST, manifest)
        swap_in_dir(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def verify_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a run directory's manifest, schema version and file hashes; return the manifest."""
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(
            f"{root} is not a run directory (train one with `reelrec train ... --out {root}`)"
        )
    if not (root / MANIFEST).is_file():
        raise ArtifactError(f"{root} has no {MANIFEST}: not a reelrec run, or an incomplete one")
    manifest = _read_json(root / MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{root / MANIFEST} is malformed")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{root} has schema version {version!r}; "
            f"this reelrec ({__version__}) reads version {SCHEMA_VERSION}"
        )
    files = manifest["files"]
    for name in REQUIRED:
        if name not in files:
            raise ArtifactError(f"{root}: manifest does not list {name}")
    for name, entry in files.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise ArtifactError(f"{root}: manifest names an unexpected path {name!r}")
        f = root / name
        if not f.is_file():
            raise ArtifactError(f"{root}: {name} is missing")
        if (
            not isinstance(entry, dict)
            or f.stat().st_size != entry.get("bytes")
            or sha256_file(f) != entry.get("sha256")
        ):
            raise ArtifactError(
                f"{root}: {name} does not match its sha256 in the manifest (changed or tampered)"
            )
    return manifest


def _load_tensors(path: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable safetensors file ({exc})") from None


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A verified run's ``config.json``."""
    verify_run(path)
    config = _read_json(Path(path) / "config.json")
    if not isinstance(config, dict):
        raise ArtifactError(f"{path}/config.json is malformed")
    return config


def load_state(path: str | os.PathLike[str], device: str = "cpu") -> RunState:
    """Verify and read a run directory (:meth:`Recommender.load` builds itself from it)."""
    root = Path(path)
    verify_run(root)
    config = _read_json(root / "config.json")
    try:
        vocab = _read_json(root / "vocab.json")
        users = Vocabulary.from_json(vocab["users"])
        items = Vocabulary.from_json(vocab["items"])
        shape = config["shape"]
        if (len(users), len(items)) != (shape["n_users"], shape["n_items"]):
            raise ArtifactError(f"{root}: vocabulary sizes do not match the model's shape")
        model = build_model(config["model"]["name"], len(users), len(items), config["model"]["config"])
        train_cfg = TrainConfig(**config["train"]) if config.get("train") else None
        scale = RatingScale(config["scale"]["low"], config["scale"]["high"], config["scale"].get("step"))
        fallback_mean = float(config["fallback_mean"])
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, ReelrecError) as exc:
        raise ArtifactError(f"{root}/config.json is incompatible with this reelrec: {exc}") from None
    state = _load_tensors(root / "weights.safetensors", device)
    try:
        # assign: on CPU the parameters *are* the memory-mapped tensors (copy-on-write, the file
        # is never written), so processes serving the same run share one copy of the tables
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ArtifactError(f"{root}: weights do not fit the model config ({first})") from None
    model.to(device)
    index = _load_tensors(root / "index.safetensors", "cpu")
    try:
        arrays = {
            k: index[k].numpy()
            for k in (
                "seen_indptr",
                "seen_indices",
                "user_counts",
                "item_counts",
                "fallback_user_bias",
                "fallback_item_bias",
            )
        }
    except KeyError as exc:
        raise ArtifactError(f"{root}/index.safetensors lacks {exc}") from None
    if arrays["seen_indptr"].shape[0] != len(users) + 1 or arrays["item_counts"].shape[0] != len(items):
        raise ArtifactError(f"{root}/index.safetensors does not match the vocabularies")
    seen_ratings = index["seen_ratings"].numpy() if "seen_ratings" in index else None
    if seen_ratings is not None and seen_ratings.shape != arrays["seen_indices"].shape:
        raise ArtifactError(f"{root}/index.safetensors: seen_ratings does not match seen_indices")
    item_info = None
    if (root / "items.json").is_file():
        items_obj = _read_json(root / "items.json")
        try:
            item_info = pd.DataFrame(
                {
                    "title": items_obj["title"],
                    "year": pd.array(items_obj["year"], dtype="Int64"),
                    "genres": items_obj["genres"],
                },
                index=pd.Index(items.ids, name="item"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{root}/items.json is malformed ({exc})") from None
    class_thresholds = None
    if "class_thresholds" in index:
        class_thresholds = index["class_thresholds"].numpy()
        levels = scale.levels()
        if (
            levels is None
            or class_thresholds.shape != (levels.size - 1,)
            or np.any(np.diff(class_thresholds) < 0)
        ):
            raise ArtifactError(f"{root}/index.safetensors: class_thresholds do not fit the rating scale")
    meta_keys = ("dataset", "split", "seed", "device", "protocol")
    return RunState(
        model=model,
        users=users,
        items=items,
        seen_indptr=arrays["seen_indptr"],
        seen_indices=arrays["seen_indices"],
        seen_ratings=seen_ratings,
        user_counts=arrays["user_counts"],
        item_counts=arrays["item_counts"],
        fallback_mean=fallback_mean,
        fallback_user_bias=arrays["fallback_user_bias"],
        fallback_item_bias=arrays["fallback_item_bias"],
        scale=scale,
        class_thresholds=class_thresholds,
        item_info=item_info,
        train_config=train_cfg,
        meta={k: config[k] for k in meta_keys if k in config},
        config=config,
    )


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metrics saved with a (verified) run."""
    verify_run(path)
    return _read_json(Path(path) / "metrics.json")
