"""Pictures of training runs: learning curves, run comparisons and maps of the movie embeddings.

Every public function writes one PNG and returns its :class:`~pathlib.Path`. matplotlib is
imported lazily inside the functions (``import reelrec`` stays fast and works without it), and
figures are drawn with the object-oriented API on the non-interactive Agg backend: no display,
no pyplot state, and a notebook's own backend is left alone. Sizes are fixed, so an image is
always ``figsize * dpi`` pixels (``dpi`` defaults to :data:`DPI`).

Errors a user can cause (an empty history, a model without embeddings, t-SNE without
scikit-learn) are :class:`~reelrec.errors.ReelrecError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reelrec.errors import ReelrecError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from reelrec.recommender import Recommender

__all__ = [
    "COMPARISON_WIDTH",
    "DPI",
    "EMBEDDING_SIZE",
    "LEARNING_CURVES_SIZE",
    "comparison_size",
    "plot_comparison",
    "plot_embedding_map",
    "plot_learning_curves",
    "plot_run",
]

#: resolution of every figure, in dots per inch
DPI = 120
#: the files ``plot_run`` writes (so a folder holding only these is reelrec's to rewrite)
PLOT_NAMES = ("learning_curves.png", "embeddings_pca.png", "embeddings_tsne.png")
#: learning curves, in inches (width, height): two panels, or one when there is no validation
LEARNING_CURVES_SIZE = (10.0, 4.0)
#: embedding map, in inches
EMBEDDING_SIZE = (9.0, 7.5)
#: comparison chart width in inches; its height grows with the rows (see :func:`comparison_size`)
COMPARISON_WIDTH = 8.0

#: metrics where a smaller value is better (anything else: larger is better)
_LOWER_IS_BETTER = ("rmse", "mae", "mse", "loss", "seconds", "time", "error")
#: first genres shown in the embedding legend; rarer ones are drawn as "other"
_MAX_GENRES = 10
#: one distinct colour per legend genre: tab10 without its grey (kept for "other"/"unknown"), plus indigo
_GENRE_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#393b79",
)
#: where a title label may sit around its point (offset in points, horizontal alignment), in order
_LABEL_SPOTS = (
    ((5, 4), "left"),
    ((5, -11), "left"),
    ((-5, 4), "right"),
    ((-5, -11), "right"),
    ((5, 14), "left"),
    ((-5, -21), "right"),
    ((5, -21), "left"),
    ((-5, 14), "right"),
)


# ---------------------------------------------------------------------- helpers
def _figure(figsize: tuple[float, float], dpi: int) -> Figure:
    """A figure on the Agg canvas, independent of pyplot and of the session's backend."""
    # The Agg canvas is attached explicitly instead of calling matplotlib.use("Agg"): pyplot is
    # never imported, so nothing needs a display, and a notebook's inline backend stays as it was.
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ReelrecError("plots need matplotlib: pip install matplotlib") from None

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out: Path | str, dpi: int) -> Path:
    """Write ``fig`` as a PNG at ``out`` (atomically: a temporary sibling, then a rename)."""
    from reelrec.safeio import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(out)


def _float(value: Any) -> float:
    """A number from JSON (where NaN was written as null) as a float; NaN when absent."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    """``row[key]``, where a dotted key (``"test.rmse"``) walks nested dicts; ``None`` when absent."""
    if key in row:
        return row[key]
    node: Any = row
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _lower_is_better(metric: str) -> bool:
    name = metric.rsplit(".", 1)[-1].lower()
    return any(token in name for token in _LOWER_IS_BETTER)


# ---------------------------------------------------------------------- learning curves
#: axis names of the early-stopping criteria the trainer records
_VALID_NAMES = {"valid_rmse": "validation RMSE", "valid_loss": "validation loss (the model's criterion)"}


def _history_arrays(
    history: Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> tuple[Mapping[str, Any], np.ndarray, np.ndarray, np.ndarray, str]:
    """``(meta, epochs, train loss, validation score, its key)`` of a history (see
    :func:`plot_learning_curves`); a missing validation score is NaN."""
    meta: Mapping[str, Any] = {}
    if isinstance(history, Mapping):
        meta = history
        records = history.get("history")
    else:
        records = history
    if not records:
        raise ReelrecError(
            "no per-epoch history to plot: the model was not trained in epochs "
            "(closed-form models such as bias and popularity have no learning curves)"
        )
    try:
        epochs = np.array([int(r["epoch"]) for r in records])
        train = np.array([_float(r.get("train_loss")) for r in records])
        found = {str(k) for r in records for k in r if str(k).startswith("valid_")}
        vkey = str(
            meta.get("valid_metric") or ("valid_rmse" if "valid_rmse" in found else min(found, default=""))
        )
        valid = np.array([_float(r.get(vkey)) for r in records])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ReelrecError("malformed history: every epoch record needs 'epoch' and 'train_loss'") from None
    return meta, epochs, train, valid, vkey


def _log_scale_if_wide(ax: Any, values: np.ndarray) -> bool:
    """Put ``ax``'s y axis on a log scale when ``values`` span more than a factor of 10 (plain
    numbers on the ticks, the 2s and 5s labelled between powers of ten); whether it did."""
    finite = values[np.isfinite(values)]
    log_scale = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 10)
    if log_scale:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(  # label only the 2s and 5s between the powers of ten
            FuncFormatter(
                lambda v, _: f"{v:g}" if round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""
            )
        )
        ax.tick_params(axis="y", which="minor", labelsize=7)
    return log_scale


def plot_learning_curves(
    history: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    out: Path | str,
    title: str = "",
    *,
    dpi: int = DPI,
) -> Path:
    """Train loss and the validation score per epoch, with the best epoch marked; returns ``out``.

    ``history`` is a run's ``history.json`` object (``{"history": [...], "best_epoch": ...,
    "valid_metric": ...}``), a ``TrainResult.to_json()``, or just its list of epoch records
    (``epoch``, ``train_loss``, optional ``valid_rmse`` or another ``valid_*`` score such as
    ``valid_loss``; ``valid_metric`` names it when given). The validation panel shows that
    early-stopping criterion: usually the validation RMSE. The train loss is what the optimiser
    minimised (the mean squared error plus the model's regularisation penalty), so it is labelled
    "train loss" and is not on the RMSE scale. With validation the figure has two panels;
    without it, the train loss alone. The image is :data:`LEARNING_CURVES_SIZE` × ``dpi`` pixels.

    Raises :class:`ReelrecError` when there are no epochs (closed-form models such as ``bias``
    or ``popularity``) or the records are malformed.
    """
    meta, epochs, train, valid, vkey = _history_arrays(history)
    has_valid = bool(np.isfinite(valid).any())
    best = meta.get("best_epoch")
    if best is None and has_valid:
        best = int(epochs[np.nanargmin(valid)])
    marker = "o" if len(epochs) <= 30 else None

    fig = _figure(LEARNING_CURVES_SIZE, dpi)
    axes = fig.subplots(1, 2 if has_valid else 1, squeeze=False)[0]
    ax = axes[0]
    ax.plot(epochs, train, marker=marker, markersize=3, color="tab:blue", label="train loss")
    log_scale = _log_scale_if_wide(ax, train)
    ax.set_xlabel("epoch")
    objective = "MSE + penalty" if vkey in ("valid_rmse", None) else "the model's objective"
    ax.set_ylabel(f"train loss ({objective})" + (", log scale" if log_scale else ""))
    ax.set_title("training objective")
    if has_valid:
        vax = axes[1]
        vname = _VALID_NAMES.get(vkey, vkey.replace("_", " "))
        vax.plot(epochs, valid, marker=marker, markersize=3, color="tab:orange", label=vname)
        vax.set_xlabel("epoch")
        vax.set_ylabel(vname)
        vax.set_title(vname + (" (clipped predictions)" if vkey == "valid_rmse" else ""))
    if best is not None and best in set(epochs.tolist()):
        k = int(np.flatnonzero(epochs == best)[0])
        for a in axes:
            a.axvline(best, color="0.5", linestyle="--", linewidth=1)
        ax.plot([best], [train[k]], marker="*", markersize=13, color="tab:red", linestyle="none")
        if has_valid:
            axes[1].plot(
                [best],
                [valid[k]],
                marker="*",
                markersize=13,
                color="tab:red",
                linestyle="none",
                label=f"best epoch {best}: {valid[k]:.4f}",
            )
    for a in axes:
        a.grid(True, alpha=0.3)
        a.legend(loc="best", fontsize=9)
        if len(epochs) <= 12:
            a.set_xticks(epochs)

    notes = []
    if not has_valid:
        notes.append("no validation set")
    if meta.get("stopped_early"):
        notes.append(f"stopped early after {int(epochs[-1])} epochs")
    if meta.get("refit_epochs"):
        notes.append(f"then refit on train+valid for {int(meta['refit_epochs'])} epochs")
    heading = title or "learning curves"
    fig.suptitle(heading + (f"  ({'; '.join(notes)})" if notes else ""), fontsize=12)
    return _save(fig, out, dpi)


# ---------------------------------------------------------------------- comparison
def comparison_size(n_rows: int) -> tuple[float, float]:
    """Figure size in inches of :func:`plot_comparison` for ``n_rows`` plotted rows."""
    return (COMPARISON_WIDTH, 1.5 + 0.5 * max(n_rows, 2))


def plot_comparison(
    rows: Sequence[Mapping[str, Any]],
    out: Path | str,
    metric: str = "rmse",
    label_key: str = "name",
    title: str = "",
    *,
    higher_is_better: bool | None = None,
    dpi: int = DPI,
) -> Path:
    """A dot chart comparing the runs of an experiment on one metric, best first; returns ``out``.

    Each row is a dict with a label (``row[label_key]``) and the metric (``row[metric]``; a
    dotted name such as ``"test.rmse"`` reads nested dicts, e.g. a run's ``metrics.json``).
    When a row has ``f"{metric}_std"`` (several seeds) it is drawn as an error bar and printed
    as ``mean ± std``. Rows without the metric are left out. Which end is best is guessed from
    the name (RMSE, MAE, loss and times: lower; anything else, e.g. NDCG or recall: higher)
    unless ``higher_is_better`` says. The image is :func:`comparison_size` × ``dpi`` pixels.
    """
    if higher_is_better is None:
        higher_is_better = not _lower_is_better(metric)
    points: list[tuple[str, float, float]] = []
    for n, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ReelrecError(f"comparison row {n} is a {type(row).__name__}, not a dict")
        label = _lookup(row, label_key)
        if label is None:
            raise ReelrecError(f"comparison row {n} has no {label_key!r} to label it with")
        value = _float(_lookup(row, metric))
        if math.isfinite(value):
            std = _float(_lookup(row, f"{metric}_std"))
            points.append((str(label), value, std if math.isfinite(std) else math.nan))
    if not points:
        raise ReelrecError(f"no row has a value for {metric!r}: nothing to compare")
    points.sort(key=lambda p: -p[1] if higher_is_better else p[1])

    labels = [p[0] for p in points]
    values = np.array([p[1] for p in points])
    stds = np.array([p[2] for p in points])
    y = np.arange(len(points))
    fig = _figure(comparison_size(len(points)), dpi)
    ax = fig.subplots()
    for k in y:
        ax.axhline(k, color="0.88", linewidth=0.8, zorder=0)
    has_std = bool(np.isfinite(stds).any())
    colors = ["tab:green" if k == 0 else "tab:blue" for k in y]
    if has_std:
        ax.errorbar(
            values,
            y,
            xerr=np.nan_to_num(stds),
            fmt="none",
            ecolor="0.35",
            elinewidth=1.2,
            capsize=4,
            zorder=2,
        )
    ax.scatter(values, y, s=60, c=colors, zorder=3)
    lo = float(np.min(values - np.nan_to_num(stds)))
    hi = float(np.max(values + np.nan_to_num(stds)))
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.05
    ax.set_xlim(lo - 0.15 * span, hi + 0.45 * span)  # room on the right for the value labels
    for k, (v, s) in enumerate(zip(values, stds, strict=True)):
        text = f"{v:.4f}" + (f" ± {s:.4f}" if math.isfinite(s) else "")
        right = v + (s if math.isfinite(s) else 0.0)
        ax.annotate(text, (right, k), xytext=(8, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_yticks(y, labels)
    ax.set_ylim(len(points) - 0.5, -0.5)  # best at the top
    better = "higher" if higher_is_better else "lower"
    ax.set_xlabel(f"{metric} ({better} is better" + (", mean ± std over seeds)" if has_std else ")"))
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title or f"{metric}: {len(points)} runs, best first")
    return _save(fig, out, dpi)


# ---------------------------------------------------------------------- embeddings
def _first_genres(rec: Recommender, idx: np.ndarray) -> list[str]:
    info = rec.item_info
    if info is None or "genres" not in info.columns:
        return ["unknown"] * idx.shape[0]
    out = []
    for g in info["genres"].iloc[idx].tolist():
        first = g.split("|")[0].strip() if isinstance(g, str) else ""
        out.append(first if first and first != "(no genres listed)" else "unknown")
    return out


def _titles(rec: Recommender, idx: np.ndarray) -> list[str]:
    raw = rec.items.raw(idx).tolist()
    info = rec.item_info
    titles = [None] * idx.shape[0]
    if info is not None and "title" in info.columns:
        titles = info["title"].iloc[idx].tolist()
    out = []
    for t, r in zip(titles, raw, strict=True):
        text = str(t) if isinstance(t, str) and t else f"item {r}"
        out.append(text if len(text) <= 32 else text[:31] + "…")
    return out


def _pca(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """First two principal components (deterministic signs) and their explained variance ratios."""
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(2, vt.shape[0])
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    coords = xc @ comps.T
    total = float((s**2).sum())
    ratios = [float(v) / total if total > 0 else 0.0 for v in (s[:k] ** 2)]
    if k < 2:
        coords = np.hstack([coords, np.zeros((coords.shape[0], 2 - k))])
        ratios.append(0.0)
    return coords, ratios


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ReelrecError(
            "t-SNE maps need scikit-learn: pip install scikit-learn (or pip install 'reelrec[plots]')"
        ) from None
    perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3)))
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        metric="cosine",
        random_state=seed,
    )
    # One OpenMP thread: next to torch's own OpenMP runtime (loaded in every reelrec process),
    # scikit-learn's default threads were far slower on a 2-core machine (30 movies after a
    # training run: 35 s against 0.1 s single-threaded; 3000 movies: 38 s against 16 s).
    try:
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency
    except ImportError:  # pragma: no cover
        limits: Any = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1, user_api="openmp")
    with limits:
        return np.asarray(tsne.fit_transform(x), dtype=np.float64)


def plot_embedding_map(
    rec: Recommender,
    out: Path | str,
    method: str = "pca",
    n_labels: int = 12,
    max_items: int = 3000,
    seed: int = 0,
    *,
    dpi: int = DPI,
) -> Path:
    """A 2-D map of the movie embeddings, coloured by first genre; returns ``out``.

    Uses ``rec.model.item_vectors()`` for the movies with training ratings (the ``max_items``
    most-rated when there are more). ``method="pca"`` projects on the first two principal
    components of the raw vectors (numpy SVD; the axes say how much variance each explains);
    ``method="tsne"`` runs scikit-learn's t-SNE with the cosine metric (the similarity
    ``reelrec similar`` ranks by), seeded by ``seed``. Points are coloured by each movie's first
    listed genre (the :data:`_MAX_GENRES` commonest get their own colour, the rest are "other";
    "unknown" when the genre is missing), sized by rating count, and the ``n_labels``
    most-rated movies carry their titles. The image is :data:`EMBEDDING_SIZE` × ``dpi`` pixels.

    Raises :class:`ReelrecError` for a model without item vectors, fewer than 3 trained movies,
    an unknown method, or t-SNE without scikit-learn.
    """
    if method not in ("pca", "tsne"):
        raise ReelrecError(f"unknown embedding map method {method!r}; use 'pca' or 'tsne'")
    if max_items < 3:
        raise ReelrecError(f"max_items must be at least 3, got {max_items}")
    vectors = rec.model.item_vectors()
    if vectors is None:
        raise ReelrecError(
            f"model {rec.model.name!r} has no item embeddings to map; train an mf model for an embedding map"
        )
    x_all = vectors.detach().float().cpu().numpy()
    counts = np.asarray(rec.item_counts)
    if x_all.shape[0] != counts.shape[0]:
        raise ReelrecError(f"{x_all.shape[0]} item vectors but {counts.shape[0]} items in the vocabulary")
    idx = np.flatnonzero(counts > 0)
    if idx.shape[0] > max_items:
        idx = idx[np.argsort(-counts[idx], kind="stable")[:max_items]]
        idx.sort()
    if idx.shape[0] < 3:
        raise ReelrecError(f"only {idx.shape[0]} movies have training ratings: too few to map")
    x = x_all[idx].astype(np.float64)
    if method == "pca":
        coords, ratios = _pca(x)
        xlabel, ylabel = (f"PC{k + 1} ({100 * r:.1f}% of variance)" for k, r in enumerate(ratios))
    else:
        coords = _tsne(x, seed)
        xlabel, ylabel = "t-SNE 1", "t-SNE 2"

    genres = _first_genres(rec, idx)
    common = [g for g, _ in Counter(g for g in genres if g != "unknown").most_common()]
    shown = common[:_MAX_GENRES]
    groups = [g if g in shown or g == "unknown" else "other" for g in genres]
    colors = {g: _GENRE_COLORS[k % len(_GENRE_COLORS)] for k, g in enumerate(shown)}
    colors["other"] = "0.55"
    colors["unknown"] = "0.8"

    c = counts[idx].astype(np.float64)
    sizes = 6 + 40 * np.log1p(c) / np.log1p(c.max())
    fig = _figure(EMBEDDING_SIZE, dpi)
    ax = fig.subplots()
    group_arr = np.array(groups, dtype=object)
    order = [*shown, "other", "unknown"]
    tally = Counter(groups)
    for g in order:
        mask = group_arr == g
        if not mask.any():
            continue
        ax.scatter(
            coords[mask, 0],
            coords[mask, 1],
            s=sizes[mask],
            color=colors[g],
            alpha=0.7,
            linewidths=0,
            label=f"{g} ({tally[g]})",
        )
    # outside the axes (constrained layout makes room), so it never hides points or labels
    fig.legend(title="first genre", fontsize=8, title_fontsize=9, loc="outside right upper", markerscale=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.25)
    how = "PCA" if method == "pca" else "t-SNE (cosine)"
    ax.set_title(
        f"{rec.model.name} movie embeddings, {how}: {idx.shape[0]:,} movies\n"
        f"size: rating count; labelled: the {min(max(n_labels, 0), idx.shape[0])} most rated",
        fontsize=10,
    )
    top = np.argsort(-c, kind="stable")[: max(n_labels, 0)]
    ax.plot(coords[top, 0], coords[top, 1], marker="o", markersize=4, color="black", linestyle="none")
    _place_labels(fig, ax, coords[top], _titles(rec, idx[top]))
    return _save(fig, out, dpi)


def _place_labels(fig: Figure, ax: Any, points: np.ndarray, texts: list[str]) -> None:
    """Annotate each point with its text at the first nearby spot that overlaps no earlier label."""
    fig.canvas.draw()  # fixes the layout, so the label boxes measured below are final
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []

    def annotate(x: float, y: float, text: str, spot: int) -> Any:
        (dx, dy), ha = _LABEL_SPOTS[spot]
        label = ax.annotate(
            text,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.8, "linewidth": 0},
        )
        label.set_in_layout(False)  # labels never move the axes
        return label

    for (x, y), text in zip(points, texts, strict=True):
        for spot in range(len(_LABEL_SPOTS)):
            label = annotate(x, y, text, spot)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(b) for b in placed):
                break
            label.remove()
        else:  # no free spot: the first one, overlapping
            label = annotate(x, y, text, 0)
            box = label.get_window_extent(renderer)
        placed.append(box)


# ---------------------------------------------------------------------- a saved run
def plot_run(run_dir: Path | str, out_dir: Path | str | None = None, tsne: bool = False) -> list[Path]:
    """Draw the standard pictures of a saved run; returns the files written (possibly none).

    Loads (and verifies) the run with :meth:`Recommender.load`, then writes into ``out_dir``
    (default ``<run_dir>/plots/``: ``verify_run`` checks only the files its manifest lists, so
    the run stays valid; saving the run again with ``overwrite`` replaces the folder, plots
    included):

    - ``learning_curves.png`` when the run has a per-epoch history;
    - ``embeddings_pca.png`` when the model has item vectors, and ``embeddings_tsne.png`` too
      with ``tsne=True``.
    """
    from reelrec.artifacts import MANIFEST
    from reelrec.recommender import Recommender
    from reelrec.safeio import prepare_output_dir

    run_dir = Path(run_dir)
    rec = Recommender.load(str(run_dir))
    dest = Path(out_dir) if out_dir is not None else run_dir / "plots"
    if dest.resolve() == run_dir.resolve() or (dest / MANIFEST).exists():
        raise ReelrecError(f"{dest} is a run directory; write the plots into another folder")
    prepare_output_dir(dest, command="plot", owned=PLOT_NAMES)
    label = f"{run_dir.name} ({rec.model.name})"
    written = []
    try:
        history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        history = {}
    if isinstance(history, dict) and history.get("history"):
        written.append(plot_learning_curves(history, dest / "learning_curves.png", title=label))
    if rec.model.item_vectors() is not None:
        written.append(plot_embedding_map(rec, dest / "embeddings_pca.png", method="pca"))
        if tsne:
            written.append(plot_embedding_map(rec, dest / "embeddings_tsne.png", method="tsne"))
    return written
