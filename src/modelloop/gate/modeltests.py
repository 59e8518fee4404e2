"""Model regression tests: what a team expects of any model it serves, written down beside the
project file and checked on every version, by the gate and by `modelloop test`.

A holdout metric says a model is good on average; it does not say that a calm morning flight
is predicted on time, or that more rain never makes a delay less likely. A project may ship
`tests/model/*.yaml` of three kinds of test:

- `golden`: rows with the answer expected of them (`between`, `equals` with `tolerance`,
  `above`, `below`);
- `invariance`: setting a feature to each of some values moves no row's prediction by more
  than `tolerance`;
- `directional`: raising a numeric feature by `step` never moves the prediction against
  `direction` by more than `tolerance`.

Rows are given inline (a file's `defaults` fill the features a row leaves out) or sampled:
`from_data: N` takes N rows (seeded, so every run takes the same ones) of the version's
holdout, the rows the gate judges it on, later than the window it was fitted on. Each test is
one `Check` with its numbers: the worst row, its prediction, the bound. The schema is strict:
a misspelled field is an error naming the file and the field, like the project file's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelloop.config import read_yaml
from modelloop.data import Contract, DataSource, drop_unlabelled
from modelloop.errors import ConfigError, DataError, ModelloopError, shown
from modelloop.gate.validity import Check
from modelloop.registry import Registry

#: Where a project keeps its model tests, relative to the project file's folder.
TESTS_DIR = Path("tests") / "model"
#: The kinds of test, as the `kind` field names them.
KINDS = ("golden", "invariance", "directional")
#: Two floating-point answers this close are one answer (a bound is not failed by rounding).
_EPS = 1e-9

Scalar = str | int | float | bool | None
#: The members of `Scalar` as pydantic names them in an error's location.
_SCALARS = ("str", "int", "float", "bool", "none")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expect(_Strict):
    """The answer a golden row must get: `between` (inclusive), `equals` within `tolerance`,
    or `above` and/or `below` (strict)."""

    between: tuple[float, float] | None = None
    equals: float | None = None
    tolerance: float | None = Field(default=None, ge=0)
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Expect:
        given = [k for k in ("between", "equals") if getattr(self, k) is not None]
        if self.above is not None or self.below is not None:
            given.append("above/below")
        if len(given) != 1:
            raise ValueError(
                "give exactly one of between: [LOW, HIGH], equals: VALUE (with tolerance), "
                "or above: VALUE and/or below: VALUE"
                + (f" (got {' and '.join(given)})" if given else "")
            )
        if self.tolerance is not None and self.equals is None:
            raise ValueError("tolerance goes with equals")
        if self.between is not None and self.between[0] > self.between[1]:
            raise ValueError(f"between: the low bound {self.between[0]:g} is above the high one")
        if self.above is not None and self.below is not None and self.above >= self.below:
            raise ValueError(f"above {self.above:g} and below {self.below:g}: no answer fits both")
        return self

    def margins(self, predictions: np.ndarray) -> np.ndarray:
        """How far inside the bound each answer lies: negative (or zero, for a strict bound)
        is a failure; NaN answers are minus infinity."""
        p = predictions
        if self.between is not None:
            low, high = self.between
            out = np.minimum(p - low, high - p) + _EPS
        elif self.equals is not None:
            out = (self.tolerance or 0.0) - np.abs(p - self.equals) + _EPS
        else:
            parts = []
            if self.above is not None:
                parts.append(p - self.above)
            if self.below is not None:
                parts.append(self.below - p)
            out = np.minimum.reduce(parts)
        return np.where(np.isfinite(p), out, -np.inf)

    def failed(self, margins: np.ndarray) -> np.ndarray:
        strict = self.between is None and self.equals is None
        return margins <= 0 if strict else margins < 0

    def describe(self) -> str:
        if self.between is not None:
            return f"between {self.between[0]:g} and {self.between[1]:g}"
        if self.equals is not None:
            return f"{self.equals:g} ± {self.tolerance or 0:g}"
        parts = []
        if self.above is not None:
            parts.append(f"above {self.above:g}")
        if self.below is not None:
            parts.append(f"below {self.below:g}")
        return " and ".join(parts)

    def bound(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, mode="json")


class _TestSpec(_Strict):
    name: str = Field(min_length=1)
    description: str | None = None
    #: Inline rows, feature by feature (the file's `defaults` fill the rest)...
    rows: list[dict[str, Scalar]] | None = Field(default=None, min_length=1)
    #: ...or this many rows sampled from the version's holdout.
    from_data: int | None = Field(default=None, ge=1, le=100_000)
    seed: int = 0

    @model_validator(mode="after")
    def _one_source_of_rows(self) -> _TestSpec:
        if self.rows is not None and self.from_data is not None:
            raise ValueError("give the rows inline (rows) or sample them (from_data), not both")
        if self.rows is None and self.from_data is None:
            raise ValueError(
                "needs rows: inline (rows: [{feature: value, ...}]) or sampled (from_data: N)"
            )
        return self


class GoldenTest(_TestSpec):
    """Rows whose answer is known: each must meet `expect`."""

    kind: Literal["golden"]
    expect: Expect


class InvarianceTest(_TestSpec):
    """Setting `feature` to each of `values` moves no row's answer by more than `tolerance`."""

    kind: Literal["invariance"]
    feature: str
    values: list[Scalar] = Field(min_length=2)
    tolerance: float = Field(ge=0)


class DirectionalTest(_TestSpec):
    """Raising `feature` by `step` never moves the answer against `direction` by more than
    `tolerance` (rows where the feature is missing are skipped)."""

    kind: Literal["directional"]
    feature: str
    step: float = Field(gt=0)
    direction: Literal["increases", "decreases"]
    tolerance: float = Field(default=0.0, ge=0)


ModelTestSpec = Annotated[GoldenTest | InvarianceTest | DirectionalTest, Field(discriminator="kind")]


class ModelTestFile(_Strict):
    """One `tests/model/*.yaml` file."""

    defaults: dict[str, Scalar] = Field(default_factory=dict)
    tests: list[ModelTestSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> ModelTestFile:
        seen: set[str] = set()
        for spec in self.tests:
            if spec.name in seen:
                raise ValueError(f"two tests are named {spec.name!r}: a check is found by its name")
            seen.add(spec.name)
        return self


@dataclass(frozen=True)
class ModelTest:
    """One test, where it was written (for messages), and its file's `defaults`."""

    spec: GoldenTest | InvarianceTest | DirectionalTest
    file: Path
    index: int
    defaults: Mapping[str, Scalar] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def where(self) -> str:
        """`file: tests[i]`, the prefix of every message about this test."""
        return f"{self.file}: tests[{self.index}]"

    @property
    def check_name(self) -> str:
        return f"model test {self.spec.name}"


# -- loading -----------------------------------------------------------------------------------


def model_test_files(project_dir: Path) -> list[Path]:
    """The project's model test files, in name order (empty when it has none)."""
    folder = project_dir / TESTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_model_tests(project_dir: Path) -> list[ModelTest]:
    """Every test of `project_dir/tests/model/*.yaml`, file by file in name order.

    Raises:
        ConfigError: a file is not YAML, or a field is missing, misspelled or holds the wrong
            thing (the message names the file and each bad field), or two tests share a name.
    """
    tests: list[ModelTest] = []
    names: dict[str, Path] = {}
    for path in model_test_files(project_dir):
        parsed = _parse_file(path)
        for index, spec in enumerate(parsed.tests):
            if spec.name in names:
                raise ConfigError(
                    f"{path}: tests[{index}].name: {spec.name!r} is already a test in "
                    f"{names[spec.name]}: a check is found by its name"
                )
            names[spec.name] = path
            tests.append(ModelTest(spec, path, index, dict(parsed.defaults)))
    return tests


def _parse_file(path: Path) -> ModelTestFile:
    raw = read_yaml(path, "the model test file")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping with `tests:` (a list of golden, invariance and "
            f"directional tests) and optionally `defaults:`, got {type(raw).__name__}"
        )
    try:
        return ModelTestFile.model_validate(raw)
    except ValidationError as exc:
        lines: list[str] = []
        for error in exc.errors():
            line = f"  {_field(error['loc'], raw)}: {_describe(error)}"
            if line not in lines:  # a value no member of a union takes is one mistake, not five
                lines.append(line)
        raise ConfigError(f"{path} is not a valid model test file:\n" + "\n".join(lines)) from None


def _field(loc: tuple[int | str, ...], raw: Mapping[str, Any]) -> str:
    """`tests[2] ('more rain').expect.between`: list items by index (and a test by its name),
    pydantic's union branches (the `kind` tag, `list[...]`, `str`...) left out."""
    out = ""
    parts = list(loc)
    for position, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
            if position == 1 and parts[0] == "tests":
                test = raw.get("tests") or []
                name = test[part].get("name") if part < len(test) and isinstance(test[part], dict) else None
                if isinstance(name, str):
                    out += f" ({name!r})"
        elif position == 2 and parts[0] == "tests" and part in KINDS:
            continue  # the discriminated union's branch: the file said it in `kind`
        elif "[" in part or part in _SCALARS:
            continue  # the member of a union that pydantic tried
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if any(part in _SCALARS for part in error["loc"][1:]):
        return f"expected one value (a number, text, true/false or null), got {error.get('input')!r}"
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known field (check its spelling)"
    if kind == "union_tag_not_found":
        return f"kind is required: one of {', '.join(KINDS)}"
    if kind == "union_tag_invalid":
        return f"kind: expected one of {', '.join(KINDS)}, got {error.get('input', {}).get('kind')!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if kind != "value_error" and not isinstance(given, dict | list):
        message += f", got {given!r}"
    return message


# -- checking a test against a version ---------------------------------------------------------


def problems(test: ModelTest, contract: Contract) -> list[str]:
    """What makes `test` impossible to run on a version with `contract` (a feature it does not
    have, a row missing a feature...), each naming the file and the field; empty when none."""
    spec, where = test.spec, test.where
    features = contract.features
    numeric = set(contract.names("numeric"))
    known = {rule.name for rule in contract.columns}
    out: list[str] = []
    if isinstance(spec, InvarianceTest | DirectionalTest) and spec.feature not in features:
        out.append(f"{where}.feature: {spec.feature!r} is not a feature of the model "
                   f"(its features: {', '.join(features)})")
    elif isinstance(spec, DirectionalTest) and spec.feature not in numeric:
        out.append(f"{where}.feature: {spec.feature!r} is categorical; a directional test "
                   "raises a numeric feature by a step (use an invariance test)")
    elif isinstance(spec, InvarianceTest) and spec.feature in numeric:
        bad = [v for v in spec.values if not _is_number(v)]
        if bad:
            out.append(f"{where}.values: {spec.feature!r} is numeric, but {shown(bad[0])} is not a number")
    for key in test.defaults:
        if key not in known:
            out.append(f"{test.file}: defaults.{key}: not a column of the model "
                       f"(its features: {', '.join(features)})")
    for number, row in enumerate(spec.rows or []):
        at = f"{where}.rows[{number}]"
        unknown = [key for key in row if key not in known]
        if unknown:
            out.append(f"{at}: {', '.join(map(repr, unknown))} "
                       f"{'is not a column' if len(unknown) == 1 else 'are not columns'} of the model "
                       f"(its features: {', '.join(features)})")
        merged = {**test.defaults, **row}
        missing = [f for f in features if f not in merged]
        if missing:
            out.append(f"{at}: no value for {', '.join(map(repr, missing))}: give it in the row, "
                       "or for every row in the file's `defaults`")
        for name in numeric & set(row):
            if not _is_number(row[name]):
                out.append(f"{at}.{name}: a numeric feature, got {shown(row[name])}")
    return out


def check_model_tests(tests: Iterable[ModelTest], contract: Contract) -> None:
    """Raise one ConfigError listing every test that cannot run on a version with `contract`."""
    found = [problem for test in tests for problem in problems(test, contract)]
    if found:
        raise ConfigError("the model tests do not fit the model:\n" + "\n".join(f"  {p}" for p in found))


def _number(value: Scalar) -> float:
    return math.nan if value is None else float(value)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


# -- running -----------------------------------------------------------------------------------

Predict = Callable[[pd.DataFrame], np.ndarray]


def uses_data(tests: Iterable[ModelTest]) -> bool:
    """Whether any test samples its rows from the data (`from_data`)."""
    return any(test.spec.from_data is not None for test in tests)


def run_model_tests(
    tests: Sequence[ModelTest],
    predict: Predict,
    *,
    contract: Contract,
    rows: pd.DataFrame | None = None,
) -> list[Check]:
    """One Check per test, in order. `contract` is the version's own (its features); `rows` the
    data `from_data` samples (the version's holdout). A test that cannot run on this version,
    or a model that raises on its rows, is a failed check saying why: a version is never
    passed for a test it was not put through."""
    checks = []
    for test in tests:
        found = problems(test, contract)
        if found:
            checks.append(Check(test.check_name, False, "cannot run: " + "; ".join(found)))
            continue
        base = _base_rows(test, contract, rows)
        if base.empty:
            checks.append(Check(test.check_name, False,
                                f"{test.where}.from_data: no rows to sample (the holdout is empty)"))
            continue
        try:
            checks.append(_run(test, base, predict, contract))
        except Exception as exc:  # the model's own error, whatever its kind, fails this test
            checks.append(Check(test.check_name, False,
                                f"the model raised on the test's rows: {type(exc).__name__}: {exc}"))
    return checks


def _base_rows(test: ModelTest, contract: Contract, rows: pd.DataFrame | None) -> pd.DataFrame:
    """The test's rows: its inline rows over the file's defaults, or a seeded sample of `rows`
    (keeping the id column, so the worst row can be looked up)."""
    spec = test.spec
    if spec.rows is not None:
        frame = pd.DataFrame([{**test.defaults, **row} for row in spec.rows])
        for name in contract.names("numeric"):
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        return frame
    if rows is None or rows.empty:
        return pd.DataFrame()
    count = min(int(spec.from_data or 0), len(rows))
    ids = [c for c in contract.names("id") if c in rows.columns]
    sample = rows.sample(n=count, random_state=spec.seed)
    return sample[[*ids, *contract.features]].reset_index(drop=True)


def _answers(predict: Predict, frame: pd.DataFrame, contract: Contract) -> np.ndarray:
    raw = predict(frame[contract.features])
    values = np.asarray(raw, dtype="float64").ravel()
    if values.shape != (len(frame),):
        raise ValueError(f"expected {len(frame)} numbers, got shape {np.shape(raw)}")
    return values


def _row(base: pd.DataFrame, index: int, contract: Contract) -> dict[str, Any]:
    """A row of the test as a record: its position, its id when sampled, its features."""
    record = base.iloc[index]
    out: dict[str, Any] = {"row": int(index)}
    for name in contract.names("id"):
        if name in base.columns:
            out["id"] = _plain(record[name])
    out["features"] = {name: _plain(record[name]) for name in contract.features}
    return out


def _plain(value: Any) -> Any:
    """A value as JSON holds it: numpy scalars as Python ones, missing as None."""
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _num(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 6)


def _run(test: ModelTest, base: pd.DataFrame, predict: Predict, contract: Contract) -> Check:
    spec = test.spec
    if isinstance(spec, GoldenTest):
        return _golden(test, spec, base, predict, contract)
    if isinstance(spec, InvarianceTest):
        return _invariance(test, spec, base, predict, contract)
    return _directional(test, spec, base, predict, contract)


def _golden(test: ModelTest, spec: GoldenTest, base: pd.DataFrame, predict: Predict,
            contract: Contract) -> Check:
    answers = _answers(predict, base, contract)
    margins = spec.expect.margins(answers)
    failed = spec.expect.failed(margins)
    worst = int(np.argmin(margins))
    bad = int(failed.sum())
    wanted = spec.expect.describe()
    if bad:
        detail = (f"{bad} of {len(base)} rows not {wanted}: row {worst} answered "
                  f"{answers[worst]:.4g}")
    else:
        detail = (f"{'the row' if len(base) == 1 else f'all {len(base)} rows'} {wanted}; "
                  f"closest to the bound: row {worst} at {answers[worst]:.4g}")
    return Check(test.check_name, not bad, detail, {
        "kind": "golden",
        "rows": len(base),
        "failed": bad,
        "worst": _row(base, worst, contract),
        "prediction": _num(answers[worst]),
        "bound": spec.expect.bound(),
        "margin": _num(margins[worst]),
    })


def _invariance(test: ModelTest, spec: InvarianceTest, base: pd.DataFrame, predict: Predict,
                contract: Contract) -> Check:
    numeric = spec.feature in contract.names("numeric")
    columns = []
    for value in spec.values:
        changed = base.copy()
        changed[spec.feature] = _number(value) if numeric else value
        columns.append(_answers(predict, changed, contract))
    answers = np.column_stack(columns)
    finite = np.isfinite(answers).all(axis=1)
    spread = np.where(finite, answers.max(axis=1) - answers.min(axis=1), np.inf)
    failed = spread > spec.tolerance + _EPS
    worst = int(np.argmax(spread))
    bad = int(failed.sum())
    among = ", ".join(str(v) for v in spec.values)
    if bad:
        low, high = int(np.argmin(answers[worst])), int(np.argmax(answers[worst]))
        detail = (f"changing {spec.feature} among {among} moves {bad} of {len(base)} rows by more "
                  f"than {spec.tolerance:g}: row {worst} by {spread[worst]:.4g} "
                  f"({answers[worst, low]:.4g} with {spec.values[low]}, "
                  f"{answers[worst, high]:.4g} with {spec.values[high]})")
    else:
        detail = (f"changing {spec.feature} among {among} moves {len(base)} rows by at most "
                  f"{spread[worst]:.4g} (tolerance {spec.tolerance:g})")
    return Check(test.check_name, not bad, detail, {
        "kind": "invariance",
        "rows": len(base),
        "failed": bad,
        "worst": _row(base, worst, contract),
        "predictions": {str(v): _num(answers[worst, i]) for i, v in enumerate(spec.values)},
        "spread": _num(spread[worst]),
        "tolerance": spec.tolerance,
    })


def _directional(test: ModelTest, spec: DirectionalTest, base: pd.DataFrame, predict: Predict,
                 contract: Contract) -> Check:
    present = base[spec.feature].notna().to_numpy()
    skipped = int((~present).sum())
    base = base.loc[present].reset_index(drop=True)
    if base.empty:
        return Check(test.check_name, False,
                     f"every row lacks {spec.feature}: nothing to raise by {spec.step:g}",
                     {"kind": "directional", "rows": 0, "skipped_missing": skipped})
    before = _answers(predict, base, contract)
    after = _answers(predict, base.assign(**{spec.feature: base[spec.feature] + spec.step}), contract)
    change = after - before
    against = -change if spec.direction == "increases" else change
    against = np.where(np.isfinite(against), against, np.inf)
    failed = against > spec.tolerance + _EPS
    worst = int(np.argmax(against))
    bad = int(failed.sum())
    wrong_way = "falls" if spec.direction == "increases" else "rises"
    skip = f"; {skipped} rows without {spec.feature} skipped" if skipped else ""
    if bad:
        detail = (f"{spec.feature} + {spec.step:g}: the answer {wrong_way} by more than "
                  f"{spec.tolerance:g} on {bad} of {len(base)} rows: row {worst} from "
                  f"{before[worst]:.4g} to {after[worst]:.4g}{skip}")
    else:
        most = max(float(against[worst]), 0.0)
        detail = (f"{spec.feature} + {spec.step:g}: the answer never {wrong_way} by more than "
                  f"{spec.tolerance:g} on {len(base)} rows (at most {most:.4g}){skip}")
    return Check(test.check_name, not bad, detail, {
        "kind": "directional",
        "rows": len(base),
        "skipped_missing": skipped,
        "failed": bad,
        "worst": _row(base, worst, contract),
        "prediction": _num(before[worst]),
        "prediction_after_step": _num(after[worst]),
        "against_direction": _num(against[worst]),
        "tolerance": spec.tolerance,
        "step": spec.step,
    })


# -- a version's tests, for `modelloop test` ------------------------------------------------------


@dataclass(frozen=True)
class ModelTestRun:
    """The project's model tests run against one version."""

    version: int
    files: list[str]
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def run_version_tests(
    registry: Registry,
    name: str,
    version: int | None,
    *,
    project_dir: Path,
    contract: Contract | None,
    source: DataSource,
) -> ModelTestRun:
    """Run the project's model tests against `version` (default: the challenger, else the
    champion), loaded as the gate loads it (plain `mlflow.pyfunc.load_model` behind the
    registry port). `contract` is the project's (for the holdout rows; the version's own when
    None), `source` the project's data.

    Raises:
        ConfigError: a test file is malformed, or a test names what the version does not have.
        ModelloopError: there is no version to test, or its holdout cannot be read.
    """
    tests = load_model_tests(project_dir)
    version = _version(registry, name, version)
    files = [str(path) for path in model_test_files(project_dir)]
    if not tests:
        return ModelTestRun(version, files, [])
    own = Contract.from_dict(registry.read_json(name, version, "contract.json"))
    check_model_tests(tests, own)
    rows = _holdout(registry, name, version, contract or own, source) if uses_data(tests) else None
    predictor = registry.load_predictor(name, version)
    return ModelTestRun(version, files, run_model_tests(tests, predictor.predict, contract=own, rows=rows))


def _version(registry: Registry, name: str, version: int | None) -> int:
    if version is not None:
        return registry.get_version(name, version).version  # NotFound names the version
    for alias in ("challenger", "champion"):
        found = registry.alias(name, alias)
        if found is not None:
            return found.version
    raise ModelloopError(
        f"{name!r} has no challenger and no champion to test: run `modelloop train` "
        "(or pass --version V)"
    )


def _holdout(registry: Registry, name: str, version: int, contract: Contract,
             source: DataSource) -> pd.DataFrame:
    """The version's holdout as the gate reads it: labelled rows that meet the contract."""
    tags = registry.get_version(name, version).tags
    start, end = tags.get("modelloop.window.holdout_start"), tags.get("modelloop.window.holdout_end")
    if not start or not end:
        raise ModelloopError(
            f"version {version} has no holdout window tags (it was not trained by modelloop), so "
            "`from_data` has no rows to sample: give those tests their rows inline"
        )
    rows = source.load(pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime())
    for target in contract.names("target"):
        rows, _ = drop_unlabelled(rows, target)
    rows, found = contract.check(rows, serving=False)
    if found:
        raise DataError(
            f"the holdout of version {version} breaks the data contract: "
            + "; ".join(p.describe() for p in found)
        )
    return rows
