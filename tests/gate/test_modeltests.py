"""Model regression tests (`tests/model/*.yaml`): golden rows, invariance and directional checks
pass on a model that behaves and fail on one that does not, each with the worst row, its
prediction and the bound; a malformed file is an error naming the file and the field; the gate
runs them after the validity checks; `modelloop test` runs them from the command line.

The synthetic flights' delay grows with the hour and the distance, is much likelier on B6 and
much rarer on DL, and does not depend on the other carriers: the served model (a logistic
regression) learns exactly that, so every expectation below is a fact about the data.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.data import Contract
from modelloop.errors import ConfigError
from modelloop.gate.modeltests import (
    check_model_tests,
    load_model_tests,
    run_model_tests,
    run_version_tests,
)
from modelloop.gate.validity import Check, check_validity
from modelloop.project import Project

DEFAULTS = "defaults: {hour: 14, distance: 1500, temp: 5, carrier: AA}\n"


def _write(directory: Path, text: str, name: str = "flights.yaml") -> Path:
    path = directory / "tests" / "model" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _run(project: Project, directory: Path, text: str) -> dict[str, Check]:
    """The tests in `text` run against the project's champion, by name."""
    _write(directory, DEFAULTS + textwrap.dedent(text))
    done = run_version_tests(project.registry, project.name, None, project_dir=directory,
                             contract=project.contract(), source=project.source)
    assert done.version == 1
    return {check.name.removeprefix("model test "): check for check in done.checks}


def test_golden_rows_pass_within_their_bound_and_fail_outside_it_naming_the_worst_row(
        served_project: Project, tmp_path: Path) -> None:
    checks = _run(served_project, tmp_path, """
        tests:
          - name: late evening B6 long haul is likely late
            kind: golden
            rows: [{carrier: B6, hour: 22, distance: 3000}]
            expect: {above: 0.6}
          - name: everything is on time
            kind: golden
            rows: [{carrier: DL, hour: 5, distance: 100}, {carrier: B6, hour: 22, distance: 3000}]
            expect: {below: 0.5}
          - name: a probability
            kind: golden
            from_data: 50
            expect: {between: [0, 1]}
    """)
    passed = checks["late evening B6 long haul is likely late"]
    assert passed.passed and passed.numbers["prediction"] > 0.6
    assert passed.numbers["bound"] == {"above": 0.6} and passed.numbers["failed"] == 0

    failed = checks["everything is on time"]
    assert not failed.passed
    assert failed.numbers["failed"] == 1 and failed.numbers["rows"] == 2
    worst = failed.numbers["worst"]
    assert worst["row"] == 1 and worst["features"]["carrier"] == "B6" and worst["features"]["hour"] == 22
    assert failed.numbers["prediction"] > 0.5 and failed.numbers["margin"] < 0
    assert failed.detail.startswith("1 of 2 rows not below 0.5: row 1 answered")

    sampled = checks["a probability"]
    assert sampled.passed and sampled.numbers["rows"] == 50
    assert "id" in sampled.numbers["worst"]  # a sampled row can be looked up in the data


def test_equals_holds_within_its_tolerance_only(served_project: Project, tmp_path: Path) -> None:
    row = pd.DataFrame([{"hour": 14.0, "distance": 1500.0, "temp": 5.0, "carrier": "AA"}])
    exact = float(served_project.registry.load_predictor(served_project.name, 1).predict(row)[0])
    checks = _run(served_project, tmp_path, f"""
        tests:
          - {{name: near, kind: golden, rows: [{{}}], expect: {{equals: {exact + 0.004}, tolerance: 0.005}}}}
          - {{name: far, kind: golden, rows: [{{}}], expect: {{equals: {exact + 0.01}, tolerance: 0.005}}}}
    """)
    assert checks["near"].passed and not checks["far"].passed
    assert checks["far"].numbers["prediction"] == pytest.approx(exact, abs=1e-6)


def test_invariance_passes_among_carriers_that_do_not_matter_and_fails_among_ones_that_do(
        served_project: Project, tmp_path: Path) -> None:
    checks = _run(served_project, tmp_path, """
        tests:
          - {name: plain carriers, kind: invariance, from_data: 100, feature: carrier,
             values: [AA, UA, WN], tolerance: 0.2}
          - {name: any carrier, kind: invariance, from_data: 100, feature: carrier,
             values: [B6, DL, AA], tolerance: 0.2}
    """)
    plain, any_carrier = checks["plain carriers"], checks["any carrier"]
    assert plain.passed and plain.numbers["spread"] <= 0.2 and plain.numbers["failed"] == 0
    assert not any_carrier.passed and any_carrier.numbers["failed"] > 50
    predictions = any_carrier.numbers["predictions"]
    assert predictions["B6"] > predictions["AA"] > predictions["DL"]
    assert any_carrier.numbers["spread"] == pytest.approx(predictions["B6"] - predictions["DL"], abs=1e-5)
    assert "with DL" in any_carrier.detail and "with B6" in any_carrier.detail


def test_directional_passes_the_way_the_data_goes_and_fails_the_other_way(
        served_project: Project, tmp_path: Path) -> None:
    checks = _run(served_project, tmp_path, """
        tests:
          - {name: later is later, kind: directional, from_data: 100, feature: hour, step: 2,
             direction: increases}
          - {name: later is earlier, kind: directional, from_data: 100, feature: hour, step: 2,
             direction: decreases, tolerance: 0.01}
          - {name: temperature, kind: directional, from_data: 100, feature: temp, step: 1,
             direction: increases, tolerance: 1}
    """)
    up, down = checks["later is later"], checks["later is earlier"]
    assert up.passed and up.numbers["failed"] == 0 and up.numbers["against_direction"] <= 0
    assert not down.passed and down.numbers["failed"] > 50
    worst = down.numbers
    assert worst["prediction_after_step"] - worst["prediction"] == pytest.approx(
        worst["against_direction"], abs=1e-5)
    assert worst["against_direction"] > 0.01 and worst["step"] == 2
    assert "rises by more than 0.01" in down.detail
    # temp is sometimes missing: those rows cannot be raised and are counted, not judged
    temp = checks["temperature"].numbers
    assert temp["rows"] + temp["skipped_missing"] == 100 and temp["skipped_missing"] > 0


def test_a_sample_from_the_data_is_the_same_each_run_and_a_seed_changes_it(
        served_project: Project, tmp_path: Path) -> None:
    text = """
        tests:
          - {name: a, kind: directional, from_data: 30, feature: hour, step: 1, direction: increases}
          - {name: b, kind: directional, from_data: 30, seed: 7, feature: hour, step: 1,
             direction: increases}
    """
    first, again = _run(served_project, tmp_path, text), _run(served_project, tmp_path, text)
    assert first["a"].numbers == again["a"].numbers
    assert first["a"].numbers["worst"] != first["b"].numbers["worst"]


def test_a_model_that_raises_fails_the_test_with_its_error(
        served_project: Project, tmp_path: Path) -> None:
    _write(tmp_path, DEFAULTS + "tests: [{name: g, kind: golden, rows: [{}], expect: {below: 1}}]\n")
    contract = Contract.from_dict(served_project.registry.read_json(served_project.name, 1, "contract.json"))

    def broken(frame: pd.DataFrame) -> np.ndarray:
        raise ValueError("Input contains NaN")

    [check] = run_model_tests(load_model_tests(tmp_path), broken, contract=contract)
    assert not check.passed and "raised" in check.detail and "Input contains NaN" in check.detail


# -- the file: schema errors name the file and the field -----------------------------------------


@pytest.mark.parametrize(("text", "words"), [
    ("tests: [{name: a, kind: golden, rows: [{}], expect: {above: 0.2}, tolerence: 1}]",
     ["tests[0] ('a').tolerence", "not a known field"]),
    ("tests: [{name: a, kind: goldn, rows: [{}], expect: {above: 0.2}}]",
     ["tests[0] ('a')", "kind", "'goldn'", "golden, invariance, directional"]),
    ("tests: [{name: a, rows: [{}], expect: {above: 0.2}}]", ["tests[0] ('a')", "kind is required"]),
    ("tests: [{name: a, kind: golden, rows: [{}], expect: {between: [0.5, 0.1]}}]",
     ["tests[0] ('a').expect", "low bound 0.5 is above the high one"]),
    ("tests: [{name: a, kind: golden, rows: [{}], expect: {equals: 0.2, above: 0.1}}]",
     ["tests[0] ('a').expect", "exactly one of"]),
    ("tests: [{name: a, kind: golden, expect: {above: 0.2}}]", ["tests[0] ('a')", "needs rows"]),
    ("tests: [{name: a, kind: directional, from_data: 10, feature: hour, step: -1, "
     "direction: increases}]", ["tests[0] ('a').step", "greater than 0"]),
    ("tests: [{name: a, kind: directional, from_data: 10, feature: hour, step: 1, direction: up}]",
     ["tests[0] ('a').direction", "'increases' or 'decreases'", "'up'"]),
    ("tests: [{name: a, kind: invariance, rows: [{hour: [1, 2]}], feature: carrier, values: [AA, B6], "
     "tolerance: 0.1}]", ["tests[0] ('a').rows[0].hour", "one value", "[1, 2]"]),
    ("tests: [{kind: golden, rows: [{}], expect: {above: 0.2}}]", ["tests[0].name", "required"]),
    ("tests: []", ["tests", "at least 1"]),
    ("tests:\n  - {name: a, kind: golden, rows: [{}], expect: {above: 0.2}}\n"
     "  - {name: a, kind: golden, rows: [{}], expect: {below: 0.9}}", ["two tests are named 'a'"]),
    ("- just a list", ["expected a mapping with `tests:`"]),
    ("tests: [{name: a, kind: golden", ["not valid YAML", "line"]),
])
def test_a_malformed_file_is_an_error_naming_the_file_and_the_field(
        tmp_path: Path, text: str, words: list[str]) -> None:
    path = _write(tmp_path, text, "broken.yaml")
    with pytest.raises(ConfigError) as raised:
        load_model_tests(tmp_path)
    message = str(raised.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_a_name_used_in_two_files_is_an_error_naming_both(tmp_path: Path) -> None:
    test = "tests: [{name: same, kind: golden, rows: [{}], expect: {above: 0.2}}]"
    first, second = _write(tmp_path, test, "a.yaml"), _write(tmp_path, test, "b.yaml")
    with pytest.raises(ConfigError, match="'same' is already a test in") as raised:
        load_model_tests(tmp_path)
    assert str(first) in str(raised.value) and str(second) in str(raised.value)


def test_no_folder_means_no_tests(tmp_path: Path) -> None:
    assert load_model_tests(tmp_path) == []


def test_a_test_that_does_not_fit_the_model_names_the_field_and_fails_if_run(
        served_project: Project, tmp_path: Path) -> None:
    path = _write(tmp_path, """
        defaults: {hour: 14, distance: 1500, carrier: AA, colour: red}
        tests:
          - {name: typo, kind: directional, from_data: 10, feature: huor, step: 1, direction: increases}
          - {name: category, kind: directional, from_data: 10, feature: carrier, step: 1,
             direction: increases}
          - {name: short row, kind: golden, rows: [{carier: B6}], expect: {above: 0.1}}
          - {name: text hour, kind: invariance, rows: [{temp: 1, hour: ten}], feature: hour,
             values: [1, two], tolerance: 0.1}
    """)
    contract = Contract.from_dict(served_project.registry.read_json(served_project.name, 1, "contract.json"))
    tests = load_model_tests(tmp_path)
    with pytest.raises(ConfigError) as raised:
        check_model_tests(tests, contract)
    message = str(raised.value)
    for words in [f"{path}: tests[0].feature: 'huor' is not a feature",
                  f"{path}: tests[1].feature: 'carrier' is categorical",
                  f"{path}: tests[2].rows[0]: 'carier' is not a column",
                  f"{path}: tests[2].rows[0]: no value for 'temp'",
                  f"{path}: defaults.colour: not a column",
                  f"{path}: tests[3].values: 'hour' is numeric, but 'two' is not a number",
                  f"{path}: tests[3].rows[0].hour: a numeric feature, got 'ten'"]:
        assert words in message, message
    checks = run_model_tests(tests, lambda frame: np.zeros(len(frame)), contract=contract)
    assert [c.passed for c in checks] == [False] * 4
    assert all(c.detail.startswith("cannot run: ") for c in checks)


# -- in the gate ----------------------------------------------------------------------------------


def test_check_validity_runs_the_model_tests_after_its_own_checks(
        served_project: Project, tmp_path: Path, as_of: datetime) -> None:
    _write(tmp_path, DEFAULTS + textwrap.dedent("""
        tests:
          - {name: up, kind: directional, from_data: 40, feature: hour, step: 1, direction: increases}
          - {name: down, kind: directional, from_data: 40, feature: hour, step: 1, direction: decreases}
    """))
    registry, name = served_project.registry, served_project.name
    contract = Contract.from_dict(registry.read_json(name, 1, "contract.json"))
    rows = served_project.source.load(datetime(2024, 2, 15), as_of)
    checks = check_validity(registry, name, 1, contract, rows, task="classification",
                            max_latency_ms=None, model_tests=load_model_tests(tmp_path))
    assert [c.name for c in checks] == ["loads", "predicts", "finite", "not_constant", "latency",
                                        "model test up", "model test down"]
    assert [c.passed for c in checks[-2:]] == [True, False]
    assert checks[-1].numbers["rows"] == 40  # sampled from the rows the gate was given


def test_the_gate_rejects_a_candidate_that_fails_a_model_test(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = make_project()
    project.train(as_of=as_of)
    second, _ = project.train(as_of=as_of, gate=False)
    _write(project.project_dir, DEFAULTS + textwrap.dedent("""
        tests:
          - {name: a late evening on B6 is on time, kind: golden,
             rows: [{carrier: B6, hour: 22, distance: 3000}], expect: {below: 0.5}}
    """))
    decision = project.gate(second.version.version)
    assert decision.outcome == "rejected"
    assert any(r.startswith("validity model test a late evening on B6 is on time: 1 of 1 rows")
               and r.endswith("FAILED") for r in decision.reasons)
    assert project.champion().version == 1  # type: ignore[union-attr]
    recorded = {c["name"]: c for c in project.db.decisions(version=2)[0]["metrics"]["validity"]}
    failed = recorded["model test a late evening on B6 is on time"]
    assert not failed["passed"] and failed["numbers"]["prediction"] > 0.5
    assert failed["numbers"]["bound"] == {"below": 0.5}


# -- `modelloop test` on the example project ------------------------------------------------------


@pytest.mark.integration
def test_modelloop_test_runs_the_example_projects_tests_from_the_command_line(tmp_path: Path) -> None:
    from tests.integration.conftest import run_cli

    run_cli("init", "proj", cwd=tmp_path)
    proj = tmp_path / "proj"
    tests_file = proj / "tests" / "model" / "flights.yaml"
    assert "kind: directional" in tests_file.read_text()
    run_cli("train", "--as-of", "2013-03-01", cwd=proj)

    table = run_cli("test", cwd=proj)  # the champion: there is no challenger after a promotion
    assert "flight-delays version 1: model tests" in table.stdout
    assert "5 of 5 model tests passed" in table.stdout
    report: dict[str, Any] = json.loads(run_cli("test", "--version", "1", "--json", cwd=proj).stdout)
    assert report["passed"] and report["version"] == 1 and len(report["checks"]) == 5
    visibility = next(c for c in report["checks"] if c["name"] == "model test better visibility")
    assert visibility["numbers"]["rows"] + visibility["numbers"]["skipped_missing"] == 200

    failing = proj / "tests" / "model" / "strict.yaml"
    failing.write_text("defaults: {hour: 7, distance: 762, carrier: DL, origin: LGA, dest: ATL, "
                       "temp: 50, dewp: 35, humid: 55, wind_dir: 270, wind_speed: 8, wind_gust: null, "
                       "precip: 0, pressure: 1018, visib: 10}\n"
                       "tests: [{name: never late, kind: golden, from_data: 100, expect: {below: 0.01}}]\n")
    failed = run_cli("test", cwd=proj, check=False)
    assert failed.returncode == 1 and "FAILED" in failed.stdout and "1 failed" in failed.stdout

    failing.write_text("tests: [{name: never late, kind: golden, from_data: 100, expect: {belo: 0.01}}]\n")
    malformed = run_cli("test", cwd=proj, check=False)
    assert malformed.returncode == 2
    assert "strict.yaml" in malformed.stderr and "expect.belo" in malformed.stderr
    assert "Traceback" not in malformed.stderr

    history = run_cli("history", cwd=proj)
    assert "delivery (wall clock, all history): 1 promotion," in history.stdout
    assert isinstance(json.loads(run_cli("history", "--json", cwd=proj).stdout), list)



def test_allow_none_lets_a_first_ci_run_pass_before_any_model_exists(tmp_path: Path) -> None:
    from tests.integration.conftest import run_cli
    from tests.integration.synthetic import make_frame, write_project

    make_frame(days=10).to_parquet(tmp_path / "data.parquet", index=False)
    write_project(tmp_path)
    allowed = run_cli("test", "--allow-none", cwd=tmp_path, check=False)
    assert allowed.returncode == 0 and "nothing to test" in allowed.stdout
    refused = run_cli("test", cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "no challenger and no champion" in refused.stderr
