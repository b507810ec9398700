"""``predict_file``: a saved run's predictions for a CSV of (user_id, item_id) pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from reelrec.errors import ConfigError, DataError
from reelrec.recommender import Recommender
from reelrec.runs.record import RunRecord


def predict_file(
    run_dir: str | Path,
    pairs_path: str | Path,
    out: str | Path,
    *,
    unknown: Literal["fallback", "nan", "error"] = "fallback",
    overwrite: bool = False,
) -> tuple[int, int, Path]:
    """Write ``user_id,item_id,prediction`` for every row of ``pairs_path`` to ``out``, atomically
    (never over the pairs file or the run's own data). Returns the rows written, how many were
    unknown (empty), and the destination."""
    import pandas as pd

    from reelrec.safeio import atomic_path, check_file_target

    path = Path(pairs_path)
    if path.is_dir():
        raise DataError(f"--pairs {path} is a directory, not a CSV file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    # refuse a bad destination before any work: a folder, the pairs file, a file without --overwrite
    check_file_target(out, overwrite=overwrite, inputs=[path])
    rec = Recommender.load(str(run_dir))
    if not rec.model.predicts_ratings:
        raise ConfigError(
            f"model {rec.model.name!r} ranks movies; it does not predict ratings "
            f"(use `reelrec recommend {run_dir}` for its lists)"
        )
    data = RunRecord.model_validate(rec.meta).data
    source = (data.origin if data is not None else None) or {}
    inputs = [path, *(p for p in (source.get("path"), (source.get("items") or {}).get("path")) if p)]
    check_file_target(out, overwrite=overwrite, inputs=inputs)  # nor the run's own data
    try:
        pairs = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (save it as UTF-8 CSV)") from None
    missing = {"user_id", "item_id"} - set(pairs.columns)
    if missing:
        raise DataError(f"{path}: needs columns user_id,item_id (missing {', '.join(sorted(missing))})")
    pred = rec.predict(pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy(), unknown=unknown)
    table = pd.DataFrame({"user_id": pairs["user_id"], "item_id": pairs["item_id"], "prediction": pred})
    dest = Path(out)
    with atomic_path(dest, inputs=inputs, overwrite=overwrite) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    return len(table), int(table["prediction"].isna().sum()), dest
