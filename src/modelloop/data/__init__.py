"""Data: sources, the data contract (pandera), time windows and fingerprints."""

from modelloop.data.contract import (
    ColumnRule,
    Contract,
    Problem,
    contract_report,
    label_value,
    summarize,
)
from modelloop.data.model_input import as_text, category_text, model_input
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
    "category_text",
    "contract_report",
    "fingerprint",
    "label_value",
    "model_input",
    "open_source",
    "split_by_time",
    "summarize",
    "training_windows",
]
