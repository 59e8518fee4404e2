"""Data: sources, the data contract (pandera), time windows and fingerprints."""

from modelloop.data.contract import (
    ColumnRule,
    Contract,
    Problem,
    contract_report,
    label_value,
    summarize,
    target_values,
)
from modelloop.data.labels import prepare_labels, read_label_file
from modelloop.data.model_input import as_text, category_text, model_input
from modelloop.data.row_id import derive_row_ids, row_id
from modelloop.data.sources import (
    DataSource,
    FileSource,
    FunctionSource,
    ProjectSource,
    drop_unlabelled,
    open_source,
    parse_timestamps,
    prepare_rows,
)
from modelloop.data.windows import (
    TrainingWindows,
    fingerprint,
    refit_windows,
    split_by_time,
    training_windows,
)

__all__ = [
    "ColumnRule",
    "Contract",
    "DataSource",
    "FileSource",
    "FunctionSource",
    "Problem",
    "ProjectSource",
    "TrainingWindows",
    "as_text",
    "category_text",
    "contract_report",
    "derive_row_ids",
    "drop_unlabelled",
    "fingerprint",
    "label_value",
    "model_input",
    "open_source",
    "parse_timestamps",
    "prepare_labels",
    "prepare_rows",
    "read_label_file",
    "refit_windows",
    "row_id",
    "split_by_time",
    "summarize",
    "target_values",
    "training_windows",
]
