"""The behaviour every LogStore adapter shares, asserted once (like scikit-learn's check_estimator).

Run `check_log_store(make)` on a factory of fresh, empty stores; each check gets its own store
(closed after it) and builds its frames from the store's own column names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelloop import lazy
from modelloop.errors import DataError
from modelloop.store.logs import (
    LABEL_SEQ,
    LOG_COLUMNS,
    MODEL_VERSION,
    PREDICTION,
    RECEIVED_AT,
    REQUEST_ID,
    SERVED_AT,
    LoggedRequest,
    LogStore,
    LogViews,
)

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy.module("pandas")

_DAY = datetime(2013, 3, 1)
_SERVED = datetime(2014, 4, 5, 6, 7, 8, 123456)


def check_log_store(make: Callable[[], LogStore]) -> None:
    """Assert the shared log semantics; the AssertionError names the check that failed."""
    for check in _CHECKS:
        store = make()
        try:
            check(store)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__} ({type(store).__name__}): {exc}") from exc
        finally:
            store.close()


def predictions_frame(
    store: LogStore,
    ids: Sequence[Any],
    stamps: Sequence[datetime],
    *,
    version: int = 1,
    extra: dict[str, Sequence[Any]] | None = None,
) -> pd.DataFrame:
    """A prediction frame as the server logs it: features, id, timestamp and the `_` columns."""
    count = len(ids)
    frame = pd.DataFrame(
        {
            "distance": [100.0 + i for i in range(count)],
            "carrier": [None if i % 3 == 2 else f"C{i % 2}" for i in range(count)],
            store.id_column: list(ids),
            store.timestamp_column: pd.to_datetime(list(stamps)),
            "_prediction": [round(0.1 + i / (count + 10), 6) for i in range(count)],
            "_model_version": pd.Series([version] * count, dtype="int64"),
            "_request_id": [f"req-{version}-{i}" for i in range(count)],
            "_served_at": pd.to_datetime(
                [_DAY + timedelta(days=400, seconds=i) for i in range(count)]
            ),
        }
    )
    for name, values in (extra or {}).items():
        frame[name] = list(values)
    return frame


def logged_request(
    store: LogStore,
    request_id: str,
    ids: Sequence[Any],
    stamps: Sequence[datetime],
    *,
    version: int = 1,
    features: dict[str, Sequence[Any]] | None = None,
    served_at: datetime = _SERVED,
) -> LoggedRequest:
    """A request as the server hands it to `append_requests` (features default to the demo's)."""
    count = len(ids)
    if features is None:
        features = {
            "distance": [100.0 + i if i % 4 != 3 else None for i in range(count)],
            "carrier": [None if i % 3 == 2 else f"C{i % 2}" for i in range(count)],
        }
    columns = {**features, store.id_column: list(ids), store.timestamp_column: list(stamps)}
    predictions = [round(0.1 + i / (count + 10), 6) for i in range(count)]
    return LoggedRequest(request_id, version, served_at, columns, predictions)


def _expect(condition: bool, message: str) -> None:
    # Not `assert`: a check suite must still check under `python -O`.
    if not condition:
        raise AssertionError(message)


def _expect_data_error(action: Callable[[], object], *needles: str) -> None:
    try:
        action()
    except DataError as exc:
        for needle in needles:
            _expect(needle in str(exc), f"the DataError should mention {needle!r}: {exc}")
    else:
        raise AssertionError(f"expected a DataError mentioning {', '.join(needles)}")


def _values(series: pd.Series) -> list[Any]:
    return [None if pd.isna(v) else v for v in series.tolist()]


def _ids(frame: pd.DataFrame, store: LogStore) -> list[str]:
    return [str(v) for v in frame[store.id_column].tolist()]


def _check_empty_reads(store: LogStore) -> None:
    required = [store.id_column, store.timestamp_column, *LOG_COLUMNS]
    for frame in (store.read_predictions(), store.read_predictions(_DAY, _DAY + timedelta(7))):
        _expect(isinstance(frame, pd.DataFrame) and frame.empty, "an empty log reads as empty")
        _expect(set(required) <= set(frame.columns), f"empty reads keep {required}")
    _expect(store.latest_prediction_time() is None, "an empty log has no latest time")
    labels = store.read_labels()
    _expect(labels.empty, "no labels read as an empty frame")
    expected = [store.id_column, store.target_column, RECEIVED_AT]
    _expect(set(expected) <= set(labels.columns), f"empty labels keep {expected}")
    store.append_predictions(predictions_frame(store, [], []))
    empty_labels = pd.DataFrame({store.id_column: [], store.target_column: []})
    _expect(store.append_labels(empty_labels) == 0, "an empty label frame stores 0 rows")
    _expect(
        store.read_predictions().empty and store.read_labels().empty, "empty appends add nothing"
    )


def _check_round_trip(store: LogStore) -> None:
    stamps = [_DAY + timedelta(hours=h) for h in (50, 2, 26, 3, 27, 51)]  # 3 days, out of order
    frame = predictions_frame(store, [10, 11, 12, 13, 14, 15], stamps)
    store.append_predictions(frame.iloc[:3])
    store.append_predictions(frame.iloc[3:])
    got = store.read_predictions()
    expected = frame.sort_values(store.timestamp_column, kind="stable").reset_index(drop=True)
    _expect(len(got) == len(frame), f"read {len(got)} rows, logged {len(frame)}")
    _expect(set(frame.columns) <= set(got.columns), f"every column comes back: {list(got.columns)}")
    _expect(
        pd.api.types.is_datetime64_any_dtype(got[store.timestamp_column]),
        "timestamps stay datetime64",
    )
    _expect(pd.api.types.is_integer_dtype(got[MODEL_VERSION]), "_model_version reads as an integer")
    _expect(got[PREDICTION].dtype == "float64", "_prediction reads as float64")
    for column in frame.columns:
        _expect(
            _values(got[column]) == _values(expected[column]),
            f"column {column!r} changed: {_values(got[column])} != {_values(expected[column])}",
        )


def _check_window_bounds(store: LogStore) -> None:
    midnight = _DAY + timedelta(days=1)
    stamps = [
        midnight - timedelta(minutes=30),
        midnight,
        midnight + timedelta(minutes=30),
        midnight + timedelta(days=3),
    ]
    store.append_predictions(predictions_frame(store, [1, 2, 3, 4], stamps))

    def ids(start: datetime | None, end: datetime | None) -> list[str]:
        return _ids(store.read_predictions(start, end), store)

    _expect(ids(midnight, None) == ["3", "4"], "the start bound is exclusive")
    _expect(ids(None, midnight) == ["1", "2"], "the end bound is inclusive")
    _expect(ids(stamps[0], midnight) == ["2"], "a window holds (start, end]")
    _expect(
        ids(midnight - timedelta(days=1), midnight + timedelta(days=1)) == ["1", "2", "3"],
        "a window across midnight spans both days",
    )
    _expect(ids(None, None) == ["1", "2", "3", "4"], "no bounds reads everything")
    late = store.read_predictions(stamps[-1], None)
    _expect(late.empty and store.id_column in late.columns, "a window after the last row is empty")
    _expect(store.read_predictions(midnight, stamps[0]).empty, "an inverted window is empty")


def _check_ties_keep_logging_order(store: LogStore) -> None:
    same = [_DAY + timedelta(hours=1)] * 2
    store.append_predictions(predictions_frame(store, ["b", "a"], same))
    store.append_predictions(predictions_frame(store, ["c"], [_DAY]))
    store.append_predictions(predictions_frame(store, ["d", "e"], same))
    got = _ids(store.read_predictions(), store)
    _expect(got == ["c", "b", "a", "d", "e"], f"equal timestamps keep logging order: {got}")


def _check_latest_prediction_time(store: LogStore) -> None:
    newest = _DAY + timedelta(days=5, hours=7, minutes=3)
    stamps = [newest - timedelta(hours=1), newest]
    store.append_predictions(predictions_frame(store, [1, 2], stamps))
    store.append_predictions(predictions_frame(store, [3], [_DAY]))  # a late, older batch
    latest = store.latest_prediction_time()
    _expect(isinstance(latest, datetime), f"latest_prediction_time gives a datetime: {latest!r}")
    _expect(latest == newest, f"the latest time is the max timestamp: {latest} != {newest}")


def _check_new_columns(store: LogStore) -> None:
    store.append_predictions(predictions_frame(store, [1, 2], [_DAY, _DAY + timedelta(hours=1)]))
    later = predictions_frame(
        store, [3], [_DAY + timedelta(hours=2)], version=2, extra={"temperature": [12.5]}
    )
    store.append_predictions(later)
    got = store.read_predictions()
    _expect(
        _values(got["temperature"]) == [None, None, 12.5],
        "a feature added later reads as missing in older rows",
    )
    _expect(got[MODEL_VERSION].tolist() == [1, 1, 2], "versions are kept per row")


def _check_string_ids(store: LogStore) -> None:
    ids = ["UA-1545", "AA-1141"]
    store.append_predictions(predictions_frame(store, ids, [_DAY, _DAY + timedelta(hours=1)]))
    got = store.read_predictions()[store.id_column].tolist()
    _expect(got == ids, f"string ids come back as given: {got}")
    store.append_labels(pd.DataFrame({store.id_column: ids, store.target_column: [1, 0]}))
    _expect(
        sorted(store.read_labels()[store.id_column].tolist()) == sorted(ids),
        "string label ids come back as given",
    )


def _check_labels(store: LogStore) -> None:
    first = pd.DataFrame(
        {store.id_column: [1, 2, 3], store.target_column: [0, 1, 0], "note": ["x", "y", "z"]}
    )
    _expect(store.append_labels(first) == 3, "append_labels returns the rows stored")
    relabel = pd.DataFrame({store.id_column: ["2"], store.target_column: [0]})  # "2" is 2
    _expect(store.append_labels(relabel) == 1, "append_labels returns the rows stored")
    labels = store.read_labels()
    _expect("note" not in labels.columns, "extra label columns are dropped")
    _expect(RECEIVED_AT in labels.columns, "labels carry _received_at")
    _expect(pd.api.types.is_datetime64_any_dtype(labels[RECEIVED_AT]), "_received_at is a datetime")
    by_id = dict(zip(_ids(labels, store), labels[store.target_column].tolist(), strict=True))
    _expect(len(labels) == 3, f"one row per id (compared as strings), got {len(labels)}")
    _expect(by_id == {"1": 0, "2": 0, "3": 0}, f"the latest label wins: {by_id}")


def _check_bad_labels(store: LogStore) -> None:
    _expect_data_error(
        lambda: store.append_labels(pd.DataFrame({store.id_column: [1]})), store.target_column
    )
    _expect_data_error(
        lambda: store.append_labels(pd.DataFrame({"other": [1]})),
        store.id_column,
        store.target_column,
    )
    nulls = pd.DataFrame({store.id_column: [1, None, None], store.target_column: [1, 0, 1]})
    _expect_data_error(lambda: store.append_labels(nulls), store.id_column, "2")
    no_target = pd.DataFrame({store.id_column: [1, 2], store.target_column: [None, 1.0]})
    _expect_data_error(lambda: store.append_labels(no_target), store.target_column, "1")
    _expect(store.read_labels().empty, "a rejected label frame stores nothing")


def _check_bad_predictions(store: LogStore) -> None:
    frame = predictions_frame(store, [1], [_DAY])
    _expect_data_error(
        lambda: store.append_predictions(frame.drop(columns=[PREDICTION])), PREDICTION
    )
    _expect_data_error(
        lambda: store.append_predictions(frame.drop(columns=[store.timestamp_column])),
        store.timestamp_column,
    )
    _expect(store.read_predictions().empty, "a rejected prediction frame stores nothing")


def _check_append_requests(store: LogStore) -> None:
    first = logged_request(store, "req-a", [10, 11], [_DAY + timedelta(hours=5), _DAY + timedelta(hours=30)])
    second = logged_request(
        store, "req-b", [12], [_DAY + timedelta(hours=1)], served_at=_SERVED + timedelta(seconds=1)
    )
    # A newer model version logs other features: both sets come back, missing where not logged.
    third = logged_request(
        store,
        "req-c",
        [13],
        [_DAY + timedelta(hours=50)],
        version=2,
        features={"temperature": [12.5], "origin": ["JFK"]},
        served_at=_SERVED + timedelta(seconds=2),
    )
    store.append_requests([first, second])
    store.append_requests([third])
    store.append_requests([])
    for when in ("before a flush", "after a flush"):
        got = store.read_predictions()
        _expect(len(got) == 4, f"{when}: read {len(got)} rows, logged 4 in 3 requests")
        names = {"distance", "carrier", "temperature", "origin", store.id_column, *LOG_COLUMNS}
        _expect(names <= set(got.columns), f"{when}: every column comes back: {list(got.columns)}")
        ids = got[store.id_column].tolist()
        _expect(ids == [12, 10, 11, 13], f"{when}: rows by timestamp, ids as given: {ids}")
        _expect(all(type(v) is int for v in ids), f"{when}: int ids stay ints: {ids}")
        stamps = got[store.timestamp_column]
        _expect(pd.api.types.is_datetime64_any_dtype(stamps), f"{when}: timestamps stay datetime64")
        wanted = [_DAY + timedelta(hours=h) for h in (1, 5, 30, 50)]
        _expect(stamps.tolist() == wanted, f"{when}: timestamps kept: {stamps.tolist()}")
        _expect(got[PREDICTION].dtype == "float64", f"{when}: _prediction reads as float64")
        predictions = got[PREDICTION].tolist()
        _expect(predictions == [0.1, 0.1, 0.183333, 0.1], f"{when}: predictions kept: {predictions}")
        _expect(pd.api.types.is_integer_dtype(got[MODEL_VERSION]), f"{when}: _model_version is an int")
        _expect(got[MODEL_VERSION].tolist() == [1, 1, 1, 2], f"{when}: versions are kept per row")
        requests = got[REQUEST_ID].tolist()
        _expect(requests == ["req-b", "req-a", "req-a", "req-c"], f"{when}: request ids: {requests}")
        served = got[SERVED_AT]
        _expect(pd.api.types.is_datetime64_any_dtype(served), f"{when}: _served_at is a datetime")
        seconds = [(s - _SERVED).total_seconds() for s in served.tolist()]
        _expect(seconds == [1, 0, 0, 2], f"{when}: _served_at kept to the microsecond: {seconds}")
        distance = _values(got["distance"])
        _expect(distance == [100.0, 100.0, 101.0, None], f"{when}: numeric features: {distance}")
        _expect(got["distance"].dtype == "float64", f"{when}: numeric features read as float64")
        carrier = _values(got["carrier"])
        _expect(carrier == ["C0", "C0", "C1", None], f"{when}: categorical features: {carrier}")
        temperature = _values(got["temperature"])
        _expect(temperature == [None, None, None, 12.5], f"{when}: a later feature: {temperature}")
        latest = store.latest_prediction_time()
        _expect(latest == wanted[-1], f"{when}: latest time is the max timestamp: {latest}")
        window = _values(store.read_predictions(wanted[0], wanted[2])[store.id_column])
        _expect(window == [10, 11], f"{when}: a window holds (start, end]: {window}")
        store.flush()


def _check_request_string_ids(store: LogStore) -> None:
    ids = ["UA-1545", "AA-1141"]
    store.append_requests([logged_request(store, "r", ids, [_DAY, _DAY + timedelta(hours=1)])])
    for when in ("before a flush", "after a flush"):
        got = store.read_predictions()[store.id_column].tolist()
        _expect(got == ids, f"{when}: string ids come back as given: {got}")
        store.flush()


def _check_requests_beside_frames(store: LogStore) -> None:
    store.append_predictions(predictions_frame(store, [1, 2], [_DAY, _DAY + timedelta(hours=2)]))
    store.append_requests([logged_request(store, "r", [3], [_DAY + timedelta(hours=1)])])
    for when in ("before a flush", "after a flush"):
        got = _ids(store.read_predictions(), store)
        _expect(got == ["1", "3", "2"], f"{when}: frames and requests read together: {got}")
        store.flush()


def _check_bad_requests(store: LogStore) -> None:
    good = logged_request(store, "good", [1], [_DAY])
    short = logged_request(store, "short", [1, 2], [_DAY, _DAY])
    short = LoggedRequest(
        "short", 1, _SERVED, {**short.columns, "distance": [1.0]}, short.predictions
    )
    _expect_data_error(lambda: store.append_requests([good, short]), "short", "distance")
    no_id = logged_request(store, "no-id", [1], [_DAY])
    no_id = LoggedRequest(
        "no-id",
        1,
        _SERVED,
        {k: v for k, v in no_id.columns.items() if k != store.id_column},
        no_id.predictions,
    )
    _expect_data_error(lambda: store.append_requests([no_id]), "no-id", store.id_column)
    empty_id = logged_request(store, "empty-id", [1, None], [_DAY, _DAY])
    _expect_data_error(lambda: store.append_requests([empty_id]), "empty-id", store.id_column)
    not_time = logged_request(store, "not-time", [1], ["yesterday"])  # type: ignore[list-item]
    _expect_data_error(lambda: store.append_requests([not_time]), "not-time", store.timestamp_column)
    _expect(store.read_predictions().empty, "a call with a bad request stores none of its requests")
    _expect(store.recover() == 0, "nothing to recover after rejected requests")


def _check_flush_recover_close(store: LogStore) -> None:
    store.flush()
    _expect(store.recover() == 0, "a fresh log has nothing to recover")
    store.append_requests([logged_request(store, "r", [1, 2], [_DAY, _DAY])])
    store.flush()
    store.flush()
    _expect(store.recover() == 0, "the store's own rows are not replayed")
    store.close()
    store.close()
    got = _ids(store.read_predictions(), store)
    _expect(got == ["1", "2"], f"rows are readable after close, once each: {got}")


def _check_query_empty(store: LogStore) -> None:
    def look(views: LogViews) -> tuple[dict[str, str], dict[str, str], int, int]:
        rows = views.connection.execute(f"SELECT count(*) FROM {views.predictions}").fetchone()
        labels = views.connection.execute(f"SELECT count(*) FROM {views.labels}").fetchone()
        return (
            views.columns(views.predictions),
            views.columns(views.labels),
            int(rows[0]) if rows else -1,
            int(labels[0]) if labels else -1,
        )

    columns, label_columns, rows, labels = store.query(None, None, look)
    required = {store.id_column, store.timestamp_column, *LOG_COLUMNS}
    _expect(required <= set(columns), f"an empty log's view has the log's columns: {columns}")
    wanted = {store.id_column, store.target_column, RECEIVED_AT, LABEL_SEQ}
    _expect(wanted <= set(label_columns), f"an empty label view has its columns: {label_columns}")
    _expect((rows, labels) == (0, 0), f"an empty log's views are empty: {rows}, {labels}")


def _check_query_window(store: LogStore) -> None:
    midnight = _DAY + timedelta(days=1)
    stamps = [midnight - timedelta(hours=1), midnight, midnight + timedelta(hours=1)]
    store.append_predictions(predictions_frame(store, [1, 2, 3], stamps))
    later = [midnight + timedelta(hours=2), midnight + timedelta(days=2)]
    store.append_requests([logged_request(store, "r", [4, 5], later, version=2)])
    store.append_labels(pd.DataFrame({store.id_column: [1, 2, 4], store.target_column: [1, 0, 1]}))
    store.append_labels(pd.DataFrame({store.id_column: ["4"], store.target_column: [0]}))

    def look(views: LogViews) -> tuple[list[str], list[int], dict[str, int]]:
        ids = views.connection.execute(
            f"SELECT CAST({_quote(store.id_column)} AS VARCHAR) FROM {views.predictions} ORDER BY 1"
        ).fetchall()
        versions = views.connection.execute(
            f"SELECT DISTINCT {MODEL_VERSION} FROM {views.predictions} ORDER BY 1"
        ).fetchall()
        newest = views.connection.execute(
            f"SELECT CAST({_quote(store.id_column)} AS VARCHAR) AS k, "
            f"arg_max({_quote(store.target_column)}, ({RECEIVED_AT}, {LABEL_SEQ})) "
            f"FROM {views.labels} GROUP BY k ORDER BY k"
        ).fetchall()
        return [str(r[0]) for r in ids], [int(r[0]) for r in versions], {k: int(v) for k, v in newest}

    for when in ("before a flush", "after a flush"):
        ids, versions, labels = store.query(stamps[0], later[0], look)
        _expect(ids == ["2", "3", "4"], f"{when}: the predictions view holds (start, end]: {ids}")
        _expect(versions == [1, 2], f"{when}: rows from frames and requests alike: {versions}")
        _expect(labels == {"1": 1, "2": 0, "4": 0}, f"{when}: the newest label of an id wins: {labels}")
        every = store.query(None, None, look)[0]
        _expect(every == ["1", "2", "3", "4", "5"], f"{when}: no bounds, every row: {every}")
        store.flush()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


_CHECKS: tuple[Callable[[LogStore], None], ...] = (
    _check_empty_reads,
    _check_round_trip,
    _check_window_bounds,
    _check_ties_keep_logging_order,
    _check_latest_prediction_time,
    _check_new_columns,
    _check_string_ids,
    _check_labels,
    _check_bad_labels,
    _check_bad_predictions,
    _check_append_requests,
    _check_request_string_ids,
    _check_requests_beside_frames,
    _check_bad_requests,
    _check_flush_recover_close,
    _check_query_empty,
    _check_query_window,
)
