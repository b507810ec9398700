"""reelrec.plots: every picture is a real PNG of the documented size; user errors are one line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="reelrec.plots needs matplotlib (a core dependency)")

from reelrec.artifacts import verify_run
from reelrec.data.dataset import Dataset
from reelrec.errors import ReelrecError
from reelrec.plots import (
    DPI,
    EMBEDDING_SIZE,
    LEARNING_CURVES_SIZE,
    comparison_size,
    plot_comparison,
    plot_embedding_map,
    plot_learning_curves,
    plot_run,
)
from reelrec.recommender import Recommender
from reelrec.training import TrainConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None


def assert_png(path: Path, size_in: tuple[float, float], dpi: int = DPI) -> None:
    """``path`` is a non-trivial PNG of exactly ``size_in`` inches at ``dpi``."""
    from matplotlib.image import imread

    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 5_000
    pixels = imread(path)
    assert pixels.shape[:2] == (round(size_in[1] * dpi), round(size_in[0] * dpi))
    assert pixels.std() > 0.01  # something was drawn, not a blank canvas
    assert not list(path.parent.glob(f".{path.name}*.tmp"))


def split(ds: Dataset) -> tuple[Dataset, Dataset]:
    rows = np.random.default_rng(0).permutation(len(ds))
    cut = int(0.85 * len(ds))
    return ds.subset(np.sort(rows[:cut])), ds.subset(np.sort(rows[cut:]))


@pytest.fixture
def mf(small: Dataset) -> Recommender:
    train, valid = split(small)
    cfg = TrainConfig(epochs=4, batch_size=64, patience=0, refit=False)
    return Recommender.train("mf", train, valid, train_config=cfg, seed=0, device="cpu")


# ---------------------------------------------------------------------- learning curves
def test_learning_curves_with_validation(mf: Recommender, tmp_path: Path) -> None:
    history = mf.train_result.to_json()
    assert len(history["history"]) == 4
    assert history["best_epoch"] is not None
    out = plot_learning_curves(history, tmp_path / "sub" / "lc.png", title="mf on small")
    assert out == tmp_path / "sub" / "lc.png"
    assert_png(out, LEARNING_CURVES_SIZE)


def test_learning_curves_from_a_plain_list_without_validation(tmp_path: Path) -> None:
    records = [{"epoch": e, "train_loss": 2.0 / e, "lr": 0.01, "seconds": 0.1} for e in range(1, 6)]
    assert_png(plot_learning_curves(records, tmp_path / "lc.png"), LEARNING_CURVES_SIZE)
    # JSON turns a NaN loss into null; one bad epoch must not break the picture
    records[2]["train_loss"] = None
    assert_png(plot_learning_curves({"history": records}, tmp_path / "lc2.png"), LEARNING_CURVES_SIZE)


def test_learning_curves_show_the_recorded_validation_criterion(tmp_path: Path) -> None:
    records = [{"epoch": e, "train_loss": 1.0 / e, "valid_loss": 1.5 - 0.1 * e} for e in range(1, 4)]
    history = {"history": records, "best_epoch": 3, "valid_metric": "valid_loss", "stopped_early": True}
    assert_png(plot_learning_curves(history, tmp_path / "lc.png"), LEARNING_CURVES_SIZE)
    assert_png(plot_learning_curves(records, tmp_path / "lc2.png"), LEARNING_CURVES_SIZE)


def test_learning_curves_refuse_an_empty_history(small: Dataset, tmp_path: Path) -> None:
    bias = Recommender.train("bias", small)
    with pytest.raises(ReelrecError, match="no per-epoch history") as err:
        plot_learning_curves(bias.train_result.to_json(), tmp_path / "lc.png")
    assert "\n" not in str(err.value)
    with pytest.raises(ReelrecError, match="no per-epoch history"):
        plot_learning_curves([], tmp_path / "lc.png")
    with pytest.raises(ReelrecError, match="malformed history"):
        plot_learning_curves([{"loss": 1.0}], tmp_path / "lc.png")
    assert not (tmp_path / "lc.png").exists()


# ---------------------------------------------------------------------- comparison
def test_comparison_sorts_best_first_with_error_bars(tmp_path: Path) -> None:
    rows = [
        {"name": "bias", "rmse": 0.94, "rmse_std": 0.004},
        {"name": "mf k=64", "rmse": 0.905, "rmse_std": 0.003},
        {"name": "mf k=16", "rmse": 0.91, "rmse_std": 0.002},
        {"name": "no metric"},
    ]
    out = plot_comparison(rows, tmp_path / "cmp.png", title="ml-100k, 3 seeds")
    assert_png(out, comparison_size(3))


def test_comparison_reads_nested_metrics_and_higher_is_better(tmp_path: Path) -> None:
    rows = [
        {"run": "a", "test_ranking": {"ndcg@10": 0.05}},
        {"run": "b", "test_ranking": {"ndcg@10": 0.08}},
    ]
    out = plot_comparison(rows, tmp_path / "cmp.png", metric="test_ranking.ndcg@10", label_key="run")
    assert_png(out, comparison_size(2))
    with pytest.raises(ReelrecError, match="no row has a value"):
        plot_comparison(rows, tmp_path / "x.png", metric="rmse", label_key="run")
    with pytest.raises(ReelrecError, match="no 'name'"):
        plot_comparison(rows, tmp_path / "x.png", metric="test_ranking.ndcg@10")


# ---------------------------------------------------------------------- embedding map
def test_embedding_map_pca(mf: Recommender, tmp_path: Path) -> None:
    out = plot_embedding_map(mf, tmp_path / "pca.png", n_labels=5)
    assert_png(out, EMBEDDING_SIZE)


def test_embedding_map_without_item_info_and_capped(mf: Recommender, tmp_path: Path) -> None:
    mf.item_info = None  # colours fall back to "unknown", labels to raw ids
    out = plot_embedding_map(mf, tmp_path / "pca.png", max_items=10, n_labels=50)
    assert_png(out, EMBEDDING_SIZE)


def test_embedding_map_many_genres_and_untrained_items(mf: Recommender, tmp_path: Path) -> None:
    info = mf.item_info.copy()
    info["genres"] = [f"G{k}|Drama" if k % 5 else None for k in range(len(info))]  # 24 genres + unknown
    mf.item_info = info
    mf.item_counts = mf.item_counts.copy()
    mf.item_counts[:3] = 0  # never trained: left off the map
    assert_png(plot_embedding_map(mf, tmp_path / "pca.png"), EMBEDDING_SIZE)


def test_embedding_map_errors(small: Dataset, mf: Recommender, tmp_path: Path) -> None:
    bias = Recommender.train("bias", small)
    with pytest.raises(ReelrecError, match="no item embeddings") as err:
        plot_embedding_map(bias, tmp_path / "x.png")
    assert "\n" not in str(err.value)
    with pytest.raises(ReelrecError, match="unknown embedding map method"):
        plot_embedding_map(mf, tmp_path / "x.png", method="umap")
    with pytest.raises(ReelrecError, match="is a directory"):
        plot_embedding_map(mf, tmp_path)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.skipif(not HAS_SKLEARN, reason="t-SNE needs scikit-learn (pip install scikit-learn)")
def test_embedding_map_tsne(mf: Recommender, tmp_path: Path) -> None:
    out = plot_embedding_map(mf, tmp_path / "tsne.png", method="tsne", seed=1)
    assert_png(out, EMBEDDING_SIZE)


def test_tsne_without_scikit_learn_is_one_line(
    mf: Recommender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn...` raise ImportError
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(ReelrecError, match="pip install scikit-learn") as err:
        plot_embedding_map(mf, tmp_path / "tsne.png", method="tsne")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------- a saved run
def test_plot_run_writes_into_the_run_and_keeps_it_valid(mf: Recommender, tmp_path: Path) -> None:
    run = tmp_path / "run"
    mf.save(str(run))
    written = plot_run(run, tsne=HAS_SKLEARN)
    names = ["learning_curves.png", "embeddings_pca.png"] + (["embeddings_tsne.png"] if HAS_SKLEARN else [])
    assert written == [run / "plots" / n for n in names]
    assert_png(written[0], LEARNING_CURVES_SIZE)
    for path in written[1:]:
        assert_png(path, EMBEDDING_SIZE)
    verify_run(run)  # the extra folder is not in the manifest and does not invalidate the run
    Recommender.load(str(run))
    with pytest.raises(ReelrecError, match="is a run directory"):
        plot_run(run, out_dir=run)


def test_plot_run_of_a_closed_form_model_and_custom_folder(small: Dataset, tmp_path: Path) -> None:
    run = tmp_path / "bias"
    Recommender.train("bias", small).save(str(run))
    assert plot_run(run, out_dir=tmp_path / "pics") == []  # no epochs, no embeddings: nothing to draw
    assert not (run / "plots").exists()


def test_importing_reelrec_does_not_import_matplotlib() -> None:
    import subprocess

    code = "import sys, reelrec, reelrec.plots; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
