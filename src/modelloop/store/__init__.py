"""The store: modelloop's metadata database and the prediction and label logs, behind ports."""

from modelloop.store.checks import check_log_store
from modelloop.store.db import DuplicateRun, MetadataDB
from modelloop.store.logs import LoggedRequest, LogStore, LogViews, MemoryLogStore
from modelloop.store.parquet import ParquetLogStore

__all__ = [
    "DuplicateRun",
    "LogStore",
    "LogViews",
    "LoggedRequest",
    "MemoryLogStore",
    "MetadataDB",
    "ParquetLogStore",
    "check_log_store",
]
