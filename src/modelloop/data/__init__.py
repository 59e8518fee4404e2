"""Data: sources, the data contract (pandera), time windows and fingerprints."""

from modelloop.data.contract import ColumnRule, Contract, Problem, contract_report, summarize
from modelloop.data.frames import as_text, feature_frame
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
    "as_text",
    "contract_report",
    "feature_frame",
    "fingerprint",
    "open_source",
    "split_by_time",
    "summarize",
    "training_windows",
]
