"""Data: sources, the data contract (pandera), time windows and fingerprints."""

from modelloop.data.contract import ColumnRule, Contract, Problem, contract_report, summarize
from modelloop.data.sources import DataSource, FileSource, FunctionSource, open_source
from modelloop.data.windows import TrainingWindows, fingerprint, split_by_time, training_windows

__all__ = [
    "ColumnRule",
    "Contract",
    "DataSource",
    "FileSource",
    "FunctionSource",
    "Problem",
    "TrainingWindows",
    "contract_report",
    "fingerprint",
    "open_source",
    "split_by_time",
    "summarize",
    "training_windows",
]
