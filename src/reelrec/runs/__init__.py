"""Runs: the unit of work above the library (one trained, measured, saved model).

* :mod:`reelrec.runs.source`: load a dataset (:class:`DataSource`), join side tables, reload a
  run's recorded source;
* :mod:`reelrec.runs.record`: the typed :class:`RunRecord` of a run's ``config.json`` and
  :func:`rebuild_split` (one policy for data that changed: refuse);
* :mod:`reelrec.runs.train`: :func:`train_run`, the one place a run is trained and saved.

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
