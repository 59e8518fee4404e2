import modelloop.store as store


def test_all_is_sorted_and_complete():
    assert store.__all__ == sorted(store.__all__)
    assert set(store.__all__) == {
        "DuplicateRun", "LogStore", "LogViews", "LoggedRequest", "MemoryLogStore", "MetadataDB",
        "ParquetLogStore", "check_log_store",
    }
    for name in store.__all__:
        assert getattr(store, name) is not None
