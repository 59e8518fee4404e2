"""OpenAPI descriptions of the bodies the fast routes read themselves.

`/invocations` and `/labels` bypass FastAPI's body parsing (it would build pydantic objects per
request), so their request bodies are described here, for clients, for `/docs` and for
schema-driven testing.
"""

from __future__ import annotations

from typing import Any

_SCALAR: dict[str, Any] = {
    "nullable": True,
    "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
}
_ROW: dict[str, Any] = {"type": "object", "additionalProperties": _SCALAR}
_ROWS: dict[str, Any] = {"type": "array", "items": _ROW}
_COLUMNS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "array", "items": _SCALAR}}

INVOCATIONS_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "Rows to score, in one of MLflow's scoring formats. Every feature of the served "
        "version's data contract is required; the id and timestamp columns are optional and "
        "logged when sent."
    ),
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["dataframe_split"],
                        "properties": {
                            "dataframe_split": {
                                "type": "object",
                                "required": ["columns", "data"],
                                "properties": {
                                    "columns": {"type": "array", "items": {"type": "string"}},
                                    "data": {"type": "array", "items": {"type": "array", "items": _SCALAR}},
                                    "index": {"type": "array"},
                                },
                            }
                        },
                    },
                    {
                        "type": "object",
                        "required": ["dataframe_records"],
                        "properties": {"dataframe_records": _ROWS},
                    },
                    {
                        "type": "object",
                        "required": ["instances"],
                        "properties": {"instances": {"oneOf": [_ROWS, _COLUMNS]}},
                    },
                    {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {"inputs": {"oneOf": [_ROWS, _COLUMNS, _ROW]}},
                    },
                ]
            },
            "example": {
                "dataframe_split": {
                    "columns": ["hour", "carrier"],
                    "data": [[5, "UA"]],
                }
            },
        },
        "text/csv": {"schema": {"type": "string"}, "example": "hour,carrier\n5,UA\n"},
    },
}

LABELS_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "Ground truth: one object per row with the project's id and target columns. A row whose "
        "target is empty has not arrived yet: it is skipped and counted, not refused."
    ),
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    _ROWS,
                    {"type": "object", "required": ["labels"], "properties": {"labels": _ROWS}},
                ]
            }
        },
        "text/csv": {"schema": {"type": "string"}},
    },
}

_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error_code", "message"],
    "properties": {
        "error_code": {"type": "string"},
        "problem": {"type": "string"},
        "column": {"type": "string"},
        "message": {"type": "string"},
    },
}

_WHY = {
    400: "the request breaks the protocol or the data contract; the message names the column or problem",
    408: "the body did not arrive within serving.body_timeout",
    413: "the body is larger than serving.max_body",
    415: "the content type is neither application/json nor text/csv",
    500: "the model failed on rows that passed validation (a bug; see the server log)",
    503: "the prediction log could not be written; nothing was acknowledged",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"description": _WHY[code], "content": {"application/json": {"schema": _ERROR}}}
        for code in codes
    }
