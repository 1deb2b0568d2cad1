"""Data layer: read logged robot datasets (D4RL layout, Minari, robomimic) into device tensors.

`load_dataset` reads and validates a file into a `TransitionDataset`; `inspect_dataset` reports
on one without failing on fixable problems; `write_minari_dataset` writes rollouts in Minari's
layout. Every bad-input failure is a `DatasetError` naming the file and key.
"""

from robo_offline.data.dataset import Batch, TransitionDataset
from robo_offline.data.errors import DatasetError
from robo_offline.data.inspection import InspectReport, inspect_dataset
from robo_offline.data.loading import load_dataset
from robo_offline.data.minari_writer import write_minari_dataset
from robo_offline.data.readers import FORMATS, detect_format
from robo_offline.data.returns import compute_mc_returns

__all__ = [
    "FORMATS",
    "Batch",
    "DatasetError",
    "InspectReport",
    "TransitionDataset",
    "compute_mc_returns",
    "detect_format",
    "inspect_dataset",
    "load_dataset",
    "write_minari_dataset",
]
