"""How tests/data/saved_runs was made (run once, from the repository root, with the code of 99d2a85)."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, "tests")
from conftest import small_frame
from reelrec.data.dataset import Dataset
from reelrec.data.split import make_split
from reelrec.recommender import Recommender
from reelrec.training.trainer import TrainConfig

root = Path("tests/data/saved_runs")
ds = Dataset.from_frame(small_frame(seed=7), name="small")
split = make_split(ds, "holdout90", seed=42, valid_fraction=0.1)
models = {
    "bias": ({}, None),
    "mf": ({"embedding_size": 4, "use_bias": True}, {"epochs": 3, "batch_size": 64}),
    "mlp": (
        {"embedding_size": 4, "hidden": [8, 4], "user_reg": 0.01, "use_bias": True},
        {"epochs": 2, "batch_size": 64},
    ),
    "bpr": ({"embedding_size": 4, "item_bias": True}, {"epochs": 2, "batch_size": 64}),
    "autorec": ({"hidden": 6}, {"epochs": 2, "batch_size": 16}),
}
users = ds.users.ids[:12]
items = ds.items.ids[:12]
uu, ii = np.meshgrid(users, items, indexing="ij")
expected = {"users": [int(x) for x in uu.ravel()], "items": [str(x) for x in ii.ravel()], "predictions": {}}
for name, (params, train) in models.items():
    cfg = None
    if train is not None:
        from reelrec.models.registry import model_class

        cfg = TrainConfig(**{**model_class(name).train_defaults(len(split.train)), **train, "refit": False})
    rec = Recommender.train(
        name, split.train, split.valid, model_params=params, train_config=cfg, seed=3, device="cpu"
    )
    rec.save(str(root / name), metrics={}, overwrite=True)
    pred = Recommender.load(str(root / name)).predict(uu.ravel(), ii.ravel())
    expected["predictions"][name] = [None if not np.isfinite(p) else float(p) for p in pred]
(root / "expected.json").write_text(json.dumps(expected, indent=0) + "\n")
expected["recommend"] = {}
for name in models:
    rec = Recommender.load(str(root / name))
    expected["recommend"][name] = [
        [str(i.item_id), round(i.score, 6)] for i in rec.recommend(int(users[0]), n=5)
    ]
(root / "expected.json").write_text(json.dumps(expected, indent=0) + "\n")
