"""Request validation, compiled once per model version from its data contract.

A request's decoded columns (plain JSON values) are checked value by value and turned into what
the log keeps and the model reads: numeric features as float or None, categorical features as
text or None (the model artifact's own `category_text`), ids as int or str, timestamps as naive
UTC datetimes. Anything that could crash the server, poison the log or steer monitoring is a
BadRequest naming the column and the rows: a value that is not a scalar, a number past float
range, a timestamp that does not parse, is a bare number, or lies in the future beyond the
allowed clock skew, text longer than the limit, a null the contract forbids.

Plain Python on plain values: for the one-row requests a service mostly gets, this is an order
of magnitude cheaper than building and validating a DataFrame per request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelloop.data.contract import Contract
from modelloop.data.model_input import category_text
from modelloop.errors import BadRequest
from modelloop.serving.codecs import Columns

_INT64 = 2**63
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
#: pandas keeps timestamps in nanoseconds: nothing before this reads back.
_EARLIEST = datetime(1678, 1, 1)
_SHOWN = 5


class _Invalid(Exception):
    """One value breaks a rule; `why` says how (the caller adds the column and the row)."""

    def __init__(self, why: str, problem: str = "bad_value") -> None:
        super().__init__(why)
        self.why = why
        self.problem = problem


@dataclass(frozen=True)
class Limits:
    """What a request may hold beyond the contract's rules (the `serving` settings)."""

    max_value_length: int = 1024
    max_clock_skew: timedelta = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ValidRows:
    """A request's rows after validation: what the model scores and the log keeps."""

    n_rows: int
    features: dict[str, list[Any]]
    ids: list[int | str] | None
    times: list[datetime] | None


def valid_request_id(value: object) -> bool:
    """Whether a client's request id (X-Request-Id, or a v2 body's "id") may be used as given:
    1 to 128 letters, digits or `. _ : -`, since it is logged with the rows."""
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def _scalar_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _not_scalar(value: Any) -> bool:
    return isinstance(value, (list, dict))


def number(value: Any) -> float | None:
    """A numeric feature's value: a finite float, or None when missing."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return None
        raise _Invalid("is not a finite number", "wrong_type")
    if isinstance(value, (int, bool)):
        try:
            return float(value)
        except OverflowError:
            raise _Invalid("is past the range of a float", "wrong_type") from None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            parsed = float(text)
        except ValueError:
            raise _Invalid("is not a number", "wrong_type") from None
        if not math.isfinite(parsed):
            raise _Invalid("is not a finite number", "wrong_type")
        return parsed
    if _not_scalar(value):
        raise _Invalid("is not a scalar", "wrong_type")
    raise _Invalid("is not a number", "wrong_type")


def text_value(max_length: int) -> Callable[[Any], str | None]:
    def category(value: Any) -> str | None:
        if value is None:
            return None
        if _not_scalar(value):
            raise _Invalid("is not a scalar", "wrong_type")
        text = category_text(value)
        if not isinstance(text, str):  # NaN: missing
            return None
        if len(text) > max_length:
            raise _Invalid(f"is longer than serving.max_value_length ({max_length} characters)")
        return text

    return category


def id_value(max_length: int) -> Callable[[Any], int | str]:
    def identifier(value: Any) -> int | str:
        if value is None:
            raise _Invalid("is empty; every row needs its id to join the labels that come later", "null")
        if isinstance(value, bool) or _not_scalar(value) or isinstance(value, float):
            raise _Invalid("is not a string or an integer", "wrong_type")
        if isinstance(value, int):
            if not -_INT64 <= value < _INT64:
                raise _Invalid("is an integer past 64 bits")
            return value
        if isinstance(value, str):
            if not value:
                raise _Invalid("is an empty string")
            if len(value) > max_length:
                raise _Invalid(f"is longer than serving.max_value_length ({max_length} characters)")
            return value
        raise _Invalid("is not a string or an integer", "wrong_type")

    return identifier


def parse_time(value: Any) -> datetime:
    """An ISO 8601 date or time (naive UTC out; an offset is converted)."""
    if value is None:
        raise _Invalid("is empty", "null")
    if isinstance(value, (bool, int, float)):
        raise _Invalid(
            "is a bare number, not a date or time (send ISO 8601, e.g. 2013-03-01T05:15:00)", "wrong_type"
        )
    if not isinstance(value, str):
        raise _Invalid("is not a date or time", "wrong_type")
    text = value.strip()
    if len(text) > 64:
        raise _Invalid("is not a date or time", "wrong_type")
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        stamp = _parse_loosely(text)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    if stamp < _EARLIEST:
        raise _Invalid(f"is before {_EARLIEST:%Y}")
    return stamp


def _parse_loosely(text: str) -> datetime:
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        raise _Invalid(
            "is not a date or time (send ISO 8601, e.g. 2013-03-01T05:15:00)", "wrong_type"
        ) from None
    if pd.isna(stamp):
        raise _Invalid("is not a date or time", "wrong_type")
    result: datetime = stamp.to_pydatetime()
    return result


class _ColumnError(Exception):
    """A column broke a rule in some rows: the message names them (collected per request)."""

    def __init__(self, column: str, problem: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.problem = problem
        self.message = message


def _check_column(
    name: str, values: list[Any], convert: Callable[[Any], Any], *, nullable: bool
) -> list[Any]:
    out: list[Any] = []
    append = out.append
    for value in values:
        try:
            converted = convert(value)
        except _Invalid:
            break
        if converted is None and not nullable:
            break
        append(converted)
    else:
        return out
    raise _describe(name, values, convert, nullable)


def _describe(name: str, values: list[Any], convert: Callable[[Any], Any], nullable: bool) -> _ColumnError:
    """Every bad row of a column that broke a rule, in one error."""
    rows: list[int] = []
    examples: list[str] = []
    first: _Invalid | None = None
    for i, value in enumerate(values):
        try:
            converted = convert(value)
        except _Invalid as bad:
            first = first or bad
        else:
            if converted is not None or nullable:
                continue
            first = first or _Invalid("has nulls, which the data contract does not allow", "null")
        rows.append(i)
        if len(examples) < 3 and value is not None:
            examples.append(_scalar_text(value))
    why = first or _Invalid("is invalid")
    shown = ", ".join(map(str, rows[:_SHOWN])) + (", ..." if len(rows) > _SHOWN else "")
    example = f", e.g. {', '.join(examples)}" if examples else ""
    return _ColumnError(
        name, why.problem, f"column {name!r} {why.why}: {len(rows)} row(s) (rows [{shown}]{example})"
    )


def _raise(errors: list[_ColumnError]) -> None:
    if errors:
        raise BadRequest(
            "; ".join(e.message for e in errors), column=errors[0].column, problem=errors[0].problem
        )


@dataclass
class RequestValidator:
    """The contract's rules for one model version, ready to check requests (built once)."""

    contract: Contract
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        rules = {r.name: r for r in self.contract.columns}
        self.id_column = self.contract.names("id")[0]
        self.timestamp_column = self.contract.names("timestamp")[0]
        self.numeric = self.contract.names("numeric")
        self.categorical = self.contract.names("categorical")
        self.features = [*self.numeric, *self.categorical]
        category = text_value(self.limits.max_value_length)
        self._checks: list[tuple[str, Callable[[Any], Any], bool]] = [
            (name, number, rules[name].nullable) for name in self.numeric
        ] + [(name, category, rules[name].nullable) for name in self.categorical]
        self._id = id_value(self.limits.max_value_length)

    def validate(self, columns: Columns, *, now: datetime | None = None) -> ValidRows:
        """Check every value; the id and timestamp columns are optional (logged when sent)."""
        if columns.n_rows == 0:
            raise BadRequest("the request holds no rows", problem="empty")
        errors: list[_ColumnError] = []
        missing = [name for name in self.features if name not in columns]
        if len(missing) == 1:
            errors.append(_ColumnError(missing[0], "missing_column", f"column {missing[0]!r} is missing"))
        elif missing:
            names = ", ".join(map(repr, missing))
            message = f"{len(missing)} columns are missing: {names}"
            errors.append(_ColumnError(missing[0], "missing_column", message))
        features: dict[str, list[Any]] = {}
        for name, convert, nullable in self._checks:
            if name in columns:
                try:
                    features[name] = _check_column(name, columns[name], convert, nullable=nullable)
                except _ColumnError as error:
                    errors.append(error)
        ids = None
        if self.id_column in columns:
            try:
                ids = _check_column(self.id_column, columns[self.id_column], self._id, nullable=False)
            except _ColumnError as error:
                errors.append(error)
        times = None
        if self.timestamp_column in columns:
            latest = (now or datetime.now(UTC).replace(tzinfo=None)) + self.limits.max_clock_skew
            skew = self.limits.max_clock_skew

            def timestamp(value: Any) -> datetime:
                stamp = parse_time(value)
                if stamp > latest:
                    raise _Invalid(
                        f"lies in the future, beyond the server's clock plus serving.max_clock_skew ({skew})"
                    )
                return stamp

            try:
                times = _check_column(
                    self.timestamp_column, columns[self.timestamp_column], timestamp, nullable=False
                )
            except _ColumnError as error:
                errors.append(error)
        _raise(errors)
        if ids is None and times is not None and self.contract.derived_id:
            ids = self._derived_ids(features, times)
        return ValidRows(columns.n_rows, features, ids, times)

    def _derived_ids(self, features: dict[str, list[Any]], times: list[datetime]) -> list[int | str]:
        """No id sent, and the project has none: the one its data and label files derive."""
        from modelloop.data.row_id import row_id

        numbers = [features[name] for name in self.numeric]
        texts = [features[name] for name in self.categorical]
        return [
            row_id(time, [column[i] for column in numbers], [column[i] for column in texts])
            for i, time in enumerate(times)
        ]


def validate_labels(
    columns: Columns,
    *,
    id_column: str,
    target: str,
    task: str,
    classes: tuple[Any, Any] = (None, None),
    max_value_length: int = 1024,
) -> tuple[list[int | str], list[float | int], int]:
    """(ids, targets, skipped): a label whose target is empty has not arrived; it is skipped and
    counted, never an error. A target the metric cannot use is one. `classes` is the project's
    (positive, negative) class when it names them (`data.positive`, `data.negative`)."""
    from modelloop.data.contract import label_value

    missing = [name for name in (id_column, target) if name not in columns]
    if missing:
        raise BadRequest(
            f"labels: missing column(s) {', '.join(map(repr, missing))}; every label needs "
            f"{id_column!r} and {target!r}",
            column=missing[0],
            problem="missing_column",
        )
    identifier = id_value(max_value_length)
    errors: list[_ColumnError] = []
    ids: list[Any] = []
    targets: list[Any] = []
    try:
        ids = _check_column(id_column, columns[id_column], identifier, nullable=False)
    except _ColumnError as error:
        errors.append(error)

    def target_value(value: Any) -> float | int | None:
        if _not_scalar(value):
            raise _Invalid("is not a scalar", "wrong_type")
        try:
            return label_value(value, task, *classes)
        except ValueError as exc:
            raise _Invalid(str(exc), "bad_value") from None

    try:
        targets = _check_column(target, columns[target], target_value, nullable=True)
    except _ColumnError as error:
        errors.append(error)
    _raise(errors)
    keep = [i for i, t in enumerate(targets) if t is not None]
    skipped = len(targets) - len(keep)
    return [ids[i] for i in keep], [targets[i] for i in keep], skipped
