"""Request codecs of MLflow's scoring protocol: every accepted shape decodes to the same rows,
and every malformed body is a BadRequest that says what was expected."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelloop import BadRequest
from modelloop.serving import Columns, parse_invocation, parse_labels

JSON = "application/json"


def decode(payload: Any, content_type: str | None = JSON) -> Columns:
    return parse_invocation(json.dumps(payload).encode(), content_type)


def rejected(body: bytes, content_type: str | None = JSON) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse_invocation(body, content_type)
    return caught.value


def same_rows(columns: Columns) -> None:
    assert list(columns.values) == ["hour", "carrier"]
    assert columns.n_rows == 2
    assert columns["hour"] in ([5, 20], ["5", "20"])  # CSV hands numbers over as text
    assert columns["carrier"] == ["UA", "B6"]


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": ["hour", "carrier"], "data": [[5, "UA"], [20, "B6"]]}},
    {"dataframe_split": {"index": [7, 8], "columns": ["hour", "carrier"],
                         "data": [[5, "UA"], [20, "B6"]]}},
    {"dataframe_records": [{"hour": 5, "carrier": "UA"}, {"hour": 20, "carrier": "B6"}]},
    {"instances": [{"hour": 5, "carrier": "UA"}, {"hour": 20, "carrier": "B6"}]},
    {"instances": {"hour": [5, 20], "carrier": ["UA", "B6"]}},
    {"inputs": [{"hour": 5, "carrier": "UA"}, {"hour": 20, "carrier": "B6"}]},
    {"inputs": {"hour": [5, 20], "carrier": ["UA", "B6"]}},
], ids=["split", "split-with-index", "records", "instances-rows", "instances-columns",
        "inputs-rows", "inputs-columns"])
def test_every_json_format_decodes_to_the_same_rows(payload: dict[str, Any]) -> None:
    same_rows(decode(payload))


def test_a_single_row_of_scalars_is_one_row() -> None:
    columns = decode({"inputs": {"hour": 5, "carrier": "UA"}})
    assert columns.values == {"hour": [5], "carrier": ["UA"]} and columns.n_rows == 1


def test_records_with_a_missing_key_get_a_null_there() -> None:
    columns = decode({"dataframe_records": [{"hour": 5, "carrier": "UA"}, {"hour": 20}]})
    assert columns["carrier"] == ["UA", None]


@pytest.mark.parametrize("content_type", [
    "text/csv", "text/csv; charset=utf-8", "TEXT/CSV",
])
def test_csv_decodes_with_its_header(content_type: str) -> None:
    same_rows(parse_invocation(b"hour,carrier\n5,UA\n20,B6\n", content_type))


@pytest.mark.parametrize("content_type", [None, JSON, "application/json; charset=utf-8"])
def test_json_is_the_default_and_parameters_are_ignored(content_type: str | None) -> None:
    same_rows(decode({"dataframe_records": [{"hour": 5, "carrier": "UA"},
                                            {"hour": 20, "carrier": "B6"}]}, content_type))


@pytest.mark.parametrize(("body", "problem", "says"), [
    (b"{not json", "malformed_json", "not valid JSON"),
    (b"", "malformed_json", "not valid JSON"),
    (b"\xff\xfe", "malformed_json", "not valid JSON"),
    (b"[1, 2]", "bad_format", "must be an object"),
    (b'"rows"', "bad_format", "must be an object"),
    (b"{}", "bad_format", "got none"),
    (b'{"rows": []}', "bad_format", "got ['rows']"),
    (b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}, "instances": [{"a": 1}]}',
     "bad_format", "exactly one of the keys"),
    (b'{"dataframe_split": [[1, 2]]}', "bad_format", '"columns" and "data"'),
    (b'{"dataframe_split": {"columns": "a", "data": [[1]]}}', "bad_format", "must be lists"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}', "bad_format",
     "row 1 has 1 values but there are 2 columns"),
    (b'{"dataframe_split": {"columns": ["a"], "data": [5]}}', "bad_format", "row 0"),
    (b'{"dataframe_records": {"a": 1}}', "bad_format", "list of objects, one per row"),
    (b'{"dataframe_records": [1, 2]}', "bad_format", "list of objects, one per row"),
    (b'{"instances": [[1, 2], [3, 4]]}', "bad_format", "list of objects, one per row"),
    (b'{"inputs": "abc"}', "bad_format", "list of rows or an object of columns"),
    (b'{"inputs": {"a": [1, 2], "b": [3]}}', "bad_format", "same number of values"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_malformed_json_bodies_say_what_was_expected(body: bytes, problem: str,
                                                     says: str) -> None:
    error = rejected(body)
    assert error.problem == problem
    assert says in str(error)
    assert error.to_json()["error_code"] == "BAD_REQUEST"


def test_the_error_lists_the_formats_a_client_can_use() -> None:
    message = str(rejected(b'{"data": [[1]]}'))
    for key in ("dataframe_split", "dataframe_records", "instances", "inputs"):
        assert key in message


@pytest.mark.parametrize(("body", "says"), [
    (b"", "no header line"),
    (b'hour,carrier\n5,"UA\n', "unexpected end of data"),
    (b"\xff\xfe,a\n1,2\n", "not UTF-8"),
    (b"hour,carrier\n5,UA,extra\n", "line 2 has 3 fields, the header 2"),
])
def test_malformed_csv_is_a_bad_request(body: bytes, says: str) -> None:
    error = rejected(body, "text/csv")
    assert error.problem == "malformed_csv"
    assert "not valid CSV" in str(error) and says in str(error)


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "application/octet-stream",
])
def test_an_unsupported_content_type_names_the_ones_that_work(content_type: str) -> None:
    error = rejected(b"hour=5", content_type)
    assert error.problem == "unsupported_media_type"
    assert repr(content_type) in str(error)
    assert "application/json" in str(error) and "text/csv" in str(error)


def test_bad_request_json_names_the_column_when_there_is_one() -> None:
    error = BadRequest("column 'hour' is missing", column="hour", problem="missing_column")
    assert error.to_json() == {"error_code": "BAD_REQUEST", "problem": "missing_column",
                               "message": "column 'hour' is missing", "column": "hour"}
    assert "column" not in BadRequest("empty body").to_json()


@pytest.mark.parametrize("body", [
    b'[{"flight_id": "F1", "delayed": 1}, {"flight_id": "F2", "delayed": 0}]',
    b'{"labels": [{"flight_id": "F1", "delayed": 1}, {"flight_id": "F2", "delayed": 0}]}',
    b'{"dataframe_records": [{"flight_id": "F1", "delayed": 1}, '
    b'{"flight_id": "F2", "delayed": 0}]}',
])
def test_labels_decode_from_each_accepted_shape(body: bytes) -> None:
    columns = parse_labels(body)
    assert columns.values == {"flight_id": ["F1", "F2"], "delayed": [1, 0]}


@pytest.mark.parametrize(("body", "problem"), [
    (b"{oops", "malformed_json"),
    (b'{"flight_id": "F1", "delayed": 1}', "bad_format"),
    (b'[["F1", 1]]', "bad_format"),
    (b'"\\ud800"', "malformed_json"),
])
def test_malformed_labels_are_a_bad_request(body: bytes, problem: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_labels(body)
    assert caught.value.problem == problem


def test_the_labels_format_error_shows_a_label_not_a_scoring_row() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_labels(b'[["F1", 1]]')
    message = str(caught.value)
    assert '"<id column>": "A17", "<target column>": 1' in message
    assert "hour" not in message and "carrier" not in message  # the /invocations example


@pytest.mark.parametrize(("body", "says"), [
    (b'{"inputs": {"hour": [1e400]}}', "infinity"),
    (b'{"inputs": {"hour": [' + b"9" * 4400 + b']}}', "infinity"),
    (b'{"inputs": {"carrier": ["\\ud800"]}}', "surrogate"),
    (b'{"inputs": ' + b"[" * 2000 + b"]" * 2000 + b"}", "depth"),
    (b'{"inputs": {"carrier": ["\xed\xa0\x80"]}}', "UTF-8"),
], ids=["past-float-range", "4400-digits", "lone-surrogate", "deep-nesting", "encoded-surrogate"])
def test_hostile_json_is_refused_at_the_parser(body: bytes, says: str) -> None:
    error = rejected(body)
    assert error.problem == "malformed_json"
    assert says in str(error)


def test_csv_empty_fields_are_missing_values() -> None:
    columns = parse_invocation(b"hour,carrier\n5,\n,UA\n", "text/csv")
    assert columns.values == {"hour": ["5", None], "carrier": [None, "UA"]}


def test_a_column_name_that_is_not_text_is_a_bad_request() -> None:
    error = rejected(b'{"dataframe_split": {"columns": [1], "data": [[1]]}}')
    assert error.problem == "bad_format" and "column names must be strings" in str(error)
