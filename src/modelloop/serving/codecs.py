"""Request codecs of MLflow's scoring protocol: JSON (dataframe_split, dataframe_records,
instances, inputs) and CSV, decoded into named columns of plain Python values, or a BadRequest
that says what is wrong.

No DataFrame per request: the server validates plain values and builds one frame per batch.
JSON is parsed with orjson, which refuses what must never reach the log: invalid UTF-8, lone
surrogates, numbers past float range, and nesting deeper than 1,024 levels.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import orjson

from modelloop.errors import BadRequest

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
#: Bodies larger than this are decoded on a thread, so one big request does not stall the loop.
OFFLOAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Columns:
    """A request's rows as named columns of JSON scalars (not yet validated), equal lengths."""

    values: dict[str, list[Any]]
    n_rows: int

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __getitem__(self, name: str) -> list[Any]:
        return self.values[name]


def loads(body: bytes) -> Any:
    """Parse a JSON body; every way it can be malformed is a BadRequest."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", problem="malformed_json") from None


def _name(column: Any, where: str) -> str:
    if not isinstance(column, str):
        raise BadRequest(
            f"{where}: column names must be strings, got {orjson.dumps(column).decode()[:80]}",
            problem="bad_format",
        )
    return column


def _no_repeats(names: list[str], where: str) -> None:
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise BadRequest(
            f"{where}: column {repeated[0]!r} appears more than once",
            column=repeated[0],
            problem="duplicate_column",
        )


_ROW_EXAMPLE = '[{"hour": 5, "carrier": "UA"}]'
_LABEL_EXAMPLE = '[{"<id column>": "A17", "<target column>": 1}]'


def _records(rows: Any, where: str, example: str = _ROW_EXAMPLE) -> Columns:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest(
            f"{where} must be a list of objects, one per row (e.g. {example})",
            problem="bad_format",
        )
    names: dict[str, None] = {}
    for row in rows:
        for key in row:
            names.setdefault(key, None)
    # A key absent from a row is a missing value there, as in pandas.DataFrame.from_records.
    return Columns({name: [row.get(name) for row in rows] for name in names}, len(rows))


def _split(payload: Any) -> Columns:
    if not isinstance(payload, dict) or "columns" not in payload or "data" not in payload:
        raise BadRequest(
            'dataframe_split must be an object with "columns" and "data"', problem="bad_format"
        )
    columns, data = payload["columns"], payload["data"]
    if not isinstance(columns, list) or not isinstance(data, list):
        raise BadRequest('dataframe_split: "columns" and "data" must be lists', problem="bad_format")
    names = [_name(c, "dataframe_split") for c in columns]
    _no_repeats(names, "dataframe_split")
    width = len(names)
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != width:
            raise BadRequest(
                f"dataframe_split: row {i} has "
                f"{len(row) if isinstance(row, list) else 'no list of'} values "
                f"but there are {width} columns",
                problem="bad_format",
            )
    if not data:
        return Columns({name: [] for name in names}, 0)
    columns = zip(*data, strict=True)  # every row has `width` values: checked above
    return Columns({name: list(values) for name, values in zip(names, columns, strict=True)}, len(data))


def _columnar(payload: Any, where: str) -> Columns:
    if isinstance(payload, list):
        return _records(payload, where)
    if isinstance(payload, dict):
        for key in payload:
            _name(key, where)
        if not any(isinstance(v, list) for v in payload.values()):
            return Columns({k: [v] for k, v in payload.items()}, 1)  # one row of scalars
        lengths = {len(v) if isinstance(v, list) else -1 for v in payload.values()}
        if len(lengths) > 1:
            raise BadRequest(
                f"{where}: every column must be a list with the same number of values",
                problem="bad_format",
            )
        return Columns({k: list(v) for k, v in payload.items()}, lengths.pop())
    raise BadRequest(f"{where} must be a list of rows or an object of columns", problem="bad_format")


def _csv(body: bytes) -> Columns:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid CSV: not UTF-8 ({exc})", problem="malformed_csv") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise BadRequest(f"the body is not valid CSV: {exc}", problem="malformed_csv") from None
    rows = [row for row in rows if row]  # blank lines carry no row
    if not rows:
        raise BadRequest("the body is not valid CSV: no header line", problem="malformed_csv")
    header, data = rows[0], rows[1:]
    _no_repeats(header, "CSV")
    for i, row in enumerate(data, start=2):
        if len(row) != len(header):
            raise BadRequest(
                f"the body is not valid CSV: line {i} has {len(row)} fields, the header {len(header)}",
                problem="malformed_csv",
            )
    # An empty field is a missing value, as pandas.read_csv reads it; text that is a number is
    # read as one by the validator, which knows the column's type.
    columns = {
        name: [value if value != "" else None for value in values]
        for name, values in zip(header, zip(*data, strict=True) if data else [()] * len(header), strict=True)
    }
    return Columns(columns, len(data))


def media_type(content_type: str | None) -> str:
    """"application/json" (also when none is given) or "text/csv"; anything else is a 415."""
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind not in ("application/json", "text/csv"):
        raise BadRequest(
            f"unsupported content type {kind!r}: send application/json or text/csv",
            problem="unsupported_media_type",
            status=415,
        )
    return kind


def parse_invocation(body: bytes, content_type: str | None) -> Columns:
    """Decode a POST /invocations body as MLflow's scoring server does."""
    if media_type(content_type) == "text/csv":
        return _csv(body)
    payload = loads(body)
    if not isinstance(payload, dict):
        raise BadRequest(
            f"the JSON body must be an object with one of the keys {', '.join(FORMATS)}",
            problem="bad_format",
        )
    found = [k for k in FORMATS if k in payload]
    if len(found) != 1:
        raise BadRequest(
            f"the JSON body must have exactly one of the keys {', '.join(FORMATS)}; "
            f"got {sorted(payload)[:10] or 'none'}",
            problem="bad_format",
        )
    key = found[0]
    if key == "dataframe_split":
        return _split(payload[key])
    if key == "dataframe_records":
        return _records(payload[key], key)
    return _columnar(payload[key], key)


def parse_labels(body: bytes, content_type: str | None = None) -> Columns:
    """POST /labels: a JSON list of {id, target} objects, or {"labels": [...]}, or CSV."""
    if media_type(content_type) == "text/csv":
        return _csv(body)
    payload = loads(body)
    if isinstance(payload, dict):
        for key in ("labels", "dataframe_records", "records"):
            if key in payload:
                payload = payload[key]
                break
        else:
            raise BadRequest(
                "labels must be a list of objects, one per label, each with the id and target columns, "
                'or {"labels": [...]}',
                problem="bad_format",
            )
    return _records(payload, "labels", _LABEL_EXAMPLE)
