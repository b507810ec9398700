"""Runs: the unit of work above the library (one trained, measured, saved model).

* :mod:`reelrec.runs.source`: the one spec of where the data comes from (:class:`DataSource`:
  a MovieLens name, a ratings file or a run's recorded origin, with its side tables) and the one
  loader, :func:`load_dataset`;
* :mod:`reelrec.runs.record`: the typed :class:`RunRecord` of a run's ``config.json`` (its
  ``data`` spec among it), :func:`load_run_data` and :func:`rebuild_split` (one policy for data
  that changed: refuse);
* :mod:`reelrec.runs.train`: :func:`train_run`, the one place a run is trained and saved, with
  the model's recipe (:func:`reelrec.training.recipe.recipe`).

The command line, the service's retrain, blends, experiments and tuning all come here; this
package never imports the CLI.
"""

from reelrec.runs.record import RunRecord, load_run_data, read_record, rebuild_split
from reelrec.runs.source import DataSource, SideData, attach_side_data, load_dataset, load_source
from reelrec.runs.train import make_run_split, train_config, train_run

__all__ = [
    "DataSource",
    "RunRecord",
    "SideData",
    "attach_side_data",
    "load_dataset",
    "load_run_data",
    "load_source",
    "make_run_split",
    "read_record",
    "rebuild_split",
    "train_config",
    "train_run",
]
