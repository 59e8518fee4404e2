"""The store: modelloop's metadata database and the prediction and label logs, behind ports."""

from modelloop.store.checks import check_log_store
from modelloop.store.db import MetadataDB
from modelloop.store.logs import LogStore, MemoryLogStore, ParquetLogStore

__all__ = [
    "LogStore",
    "MemoryLogStore",
    "MetadataDB",
    "ParquetLogStore",
    "check_log_store",
]
