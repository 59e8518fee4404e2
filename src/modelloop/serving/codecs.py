"""Request codecs of MLflow's scoring protocol: JSON (dataframe_split, dataframe_records,
instances, inputs) and CSV, turned into a DataFrame or a BadRequest that says what is wrong."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from modelloop.errors import BadRequest

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", problem="malformed_json") from None


def _records(rows: Any, where: str) -> pd.DataFrame:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest(
            f"{where} must be a list of objects, one per row "
            '(e.g. [{"hour": 5, "carrier": "UA"}])',
            problem="bad_format",
        )
    return pd.DataFrame.from_records(rows)


def _split(payload: Any) -> pd.DataFrame:
    if not isinstance(payload, dict) or "columns" not in payload or "data" not in payload:
        raise BadRequest(
            'dataframe_split must be an object with "columns" and "data"', problem="bad_format"
        )
    columns, data = payload["columns"], payload["data"]
    if not isinstance(columns, list) or not isinstance(data, list):
        raise BadRequest(
            'dataframe_split: "columns" and "data" must be lists', problem="bad_format"
        )
    names = [str(c) for c in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadRequest(f"dataframe_split: column {repeated[0]!r} appears more than once",
                         column=repeated[0], problem="duplicate_column")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadRequest(
                f"dataframe_split: row {i} has "
                f"{len(row) if isinstance(row, list) else 'no list of'} values "
                f"but there are {len(columns)} columns",
                problem="bad_format",
            )
    return pd.DataFrame(data, columns=[str(c) for c in columns])


def _columnar(payload: Any, where: str) -> pd.DataFrame:
    if isinstance(payload, list):
        return _records(payload, where)
    if isinstance(payload, dict):
        lengths = {len(v) if isinstance(v, list) else 1 for v in payload.values()}
        if len(lengths) > 1:
            raise BadRequest(
                f"{where}: every column must have the same number of values", problem="bad_format"
            )
        if lengths == {1} and not any(isinstance(v, list) for v in payload.values()):
            return pd.DataFrame([payload])
        return pd.DataFrame(payload)
    raise BadRequest(
        f"{where} must be a list of rows or an object of columns", problem="bad_format"
    )


def parse_invocation(body: bytes, content_type: str | None) -> pd.DataFrame:
    """Decode a POST /invocations body as MLflow's scoring server does."""
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind == "text/csv":
        try:
            return pd.read_csv(io.BytesIO(body))
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid CSV: {exc}", problem="malformed_csv") from None
    if kind != "application/json":
        raise BadRequest(
            f"unsupported content type {kind!r}: send application/json or text/csv",
            problem="unsupported_media_type",
        )
    payload = _json(body)
    if not isinstance(payload, dict):
        raise BadRequest(
            f"the JSON body must be an object with one of the keys {', '.join(FORMATS)}",
            problem="bad_format",
        )
    found = [k for k in FORMATS if k in payload]
    if len(found) != 1:
        raise BadRequest(
            f"the JSON body must have exactly one of the keys {', '.join(FORMATS)}; "
            f"got {sorted(payload) or 'none'}",
            problem="bad_format",
        )
    key = found[0]
    if key == "dataframe_split":
        return _split(payload[key])
    if key == "dataframe_records":
        return _records(payload[key], key)
    return _columnar(payload[key], key)


def parse_labels(body: bytes) -> pd.DataFrame:
    """POST /labels: a list of {id, target} objects, or {"labels": [...]}, or dataframe_records."""
    payload = _json(body)
    if isinstance(payload, dict):
        for key in ("labels", "dataframe_records", "records"):
            if key in payload:
                payload = payload[key]
                break
    return _records(payload, "labels")
