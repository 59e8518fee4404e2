"""A user's mistake is one message, never a traceback: a sweep of bad project files and bad
arguments through the real CLI.

Exit codes follow the CLI library's convention: 2 for the project file and for command-line
usage, 1 for everything else (the data, a missing file, a request the state cannot answer).
Most cases run the Typer app in-process (the same code path as the console script, much
faster); the cases first reported as tracebacks also run as real processes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modelloop.cli.app import app
from tests.conftest import RAW_CONFIG, build_flights
from tests.integration.conftest import run_cli

Change = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Change:
    def change(raw: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    return change


def _drop(path: str) -> Change:
    def change(raw: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        del node[leaf]

    return change


#: (case, change to the project file, command, exit code, words the message must hold)
BAD_PROJECT_FILES: list[tuple[str, Change, list[str], int, list[str]]] = [
    ("missing name", _drop("name"), ["status"], 2, ["name", "required"]),
    ("name with a space", _set("name", "my model"), ["status"], 2, ["name"]),
    ("name is a number", _set("name", 123), ["status"], 2, ["name"]),
    ("multiclass task", _set("task", "multiclass"), ["status"], 2, ["task"]),
    ("unknown top-level field", _set("trainin", {"window": "7d"}), ["status"], 2,
     ["trainin", "not a known field"]),
    ("misspelled nested field", _set("data.featurs", {}), ["status"], 2, ["data.featurs"]),
    ("no features", _set("data.features", {"numeric": [], "categorical": []}), ["status"], 2,
     ["data.features", "at least one"]),
    ("features as text", _set("data.features.numeric", "hour"), ["status"], 2,
     ["data.features.numeric"]),
    ("feature listed twice", _set("data.features.categorical", ["carrier", "hour"]), ["status"],
     2, ["hour", "both"]),
    ("target as a feature", _set("data.features.categorical", ["carrier", "delayed"]), ["status"],
     2, ["delayed", "target"]),
    ("id is the timestamp", _set("data.id", "sched_dep"), ["status"], 2,
     ["data.id", "sched_dep", "timestamp"]),
    ("target is the id", _set("data.target", "flight_id"), ["status"], 2,
     ["data.id", "'flight_id' is already the target"]),
    ("unknown metric", _set("evaluation.metric", "auc"), ["status"], 2,
     ["evaluation.metric", "'auc'", "roc_auc"]),
    ("metric of the other task", _set("evaluation.metric", "rmse"), ["status"], 2,
     ["evaluation.metric", "regression metric"]),
    ("direction", _set("evaluation.direction", "up"), ["status"], 2, ["evaluation.direction"]),
    ("duration in parsecs", _set("training.window", "5 parsecs"), ["status"], 2,
     ["training.window", "duration"]),
    ("a window too long for any calendar", _set("training.window", "1000000d"), ["status"], 2,
     ["training.window"]),
    ("zero training window", _set("training.window", "0d"), ["status"], 2,
     ["training.window", "longer than zero"]),
    ("negative holdout", _set("evaluation.holdout", "-3d"), ["status"], 2,
     ["evaluation.holdout"]),
    ("zero monitoring window", _set("monitoring.window", "0d"), ["status"], 2,
     ["monitoring.window", "longer than zero"]),
    ("negative label delay", _set("monitoring.label_delay", "-1d"), ["status"], 2,
     ["monitoring.label_delay"]),
    ("negative cooldown", _set("retraining.cooldown", "-1d"), ["status"], 2,
     ["retraining.cooldown"]),
    ("negative tolerance", _set("gate.tolerance", -0.1), ["status"], 2, ["gate.tolerance"]),
    ("floor as text", _set("gate.floor", "high"), ["status"], 2, ["gate.floor"]),
    ("floor beyond what roc_auc can reach", _set("gate.floor", 1.5), ["status"], 2,
     ["gate.floor", "roc_auc", "between 0 and 1"]),
    ("performance floor beyond roc_auc", _set("monitoring.performance_floor", -2), ["status"], 2,
     ["monitoring.performance_floor", "between 0 and 1"]),
    ("zero drift threshold", _set("monitoring.drift_threshold", 0), ["status"], 2,
     ["monitoring.drift_threshold"]),
    ("drift share above one", _set("monitoring.drift_share", 1.5), ["status"], 2,
     ["monitoring.drift_share"]),
    ("zero labelled rows", _set("monitoring.min_labelled_rows", 0), ["status"], 2,
     ["monitoring.min_labelled_rows"]),
    ("seasonal column that is not a feature", _set("monitoring.seasonal", ["month"]), ["status"],
     2, ["monitoring.seasonal", "'month'"]),
    ("positive class on regression",
     lambda r: (_set("task", "regression")(r), _set("evaluation.metric", "rmse")(r),
                _set("data.positive", "yes")(r)),
     ["status"], 2, ["data.positive", "classification"]),
    ("negative class alone", _set("data.negative", "no"), ["status"], 2,
     ["data.negative", "data.positive"]),
    ("zero batch", _set("serving.max_batch", 0), ["status"], 2, ["serving.max_batch"]),
    ("body size in words", _set("serving.max_body", "lots"), ["status"], 2, ["serving.max_body"]),
    ("months on the server's clock", _set("serving.log_flush", "1mo"), ["status"], 2,
     ["serving.log_flush"]),
    ("zero body timeout", _set("serving.body_timeout", "0s"), ["status"], 2,
     ["serving.body_timeout"]),
    ("estimator that does not exist", _set("model.estimator", "sklearn.nothing.Here"), ["train"],
     2, ["model.estimator", "sklearn.nothing.Here"]),
    ("estimator without a module", _set("model.estimator", "LogisticRegression"), ["train"], 2,
     ["model.estimator", "class path"]),
    ("estimator parameter of the wrong type", _set("model.params", {"C": "abc"}), ["train"], 2,
     ["model.params"]),
    ("estimator parameter that does not exist", _set("model.params", {"nope": 1}), ["train"], 2,
     ["model.params", "nope"]),
    ("regression with the template's classifier",
     lambda r: (_set("task", "regression")(r), _set("evaluation.metric", "rmse")(r),
                _set("model.estimator", "sklearn.linear_model.LogisticRegression")(r)),
     ["train"], 2, ["task is 'regression'", "model.estimator", "classifier"]),
    ("data file that does not exist", _set("data.source", "nowhere.parquet"), ["train"], 1,
     ["data.source", "nowhere.parquet"]),
    ("timestamp column not in the data", _set("data.timestamp", "when"), ["train"], 1,
     ["'when'", "missing"]),
    ("feature not in the data", _set("data.features.numeric", ["hour", "altitude"]), ["train"], 1,
     ["'altitude'", "missing"]),
]

#: (case, command, exit code, words the message must hold); run in a project with its data.
BAD_ARGUMENTS: list[tuple[str, list[str], int, list[str]]] = [
    ("as-of NaT for train", ["train", "--as-of", "NaT"], 2, ["--as-of", "'NaT'"]),
    ("as-of NaT for monitor", ["monitor", "--as-of", "NaT"], 2, ["--as-of", "'NaT'"]),
    ("as-of that is no date", ["train", "--as-of", "2024-13-01"], 2, ["--as-of", "2024-13-01"]),
    ("as-of in the year 10000", ["train", "--as-of", "10000-01-01"], 2, ["--as-of"]),
    ("as-of before any data", ["train", "--as-of", "1900-01-01"], 1,
     ["only 0 labelled rows", "--as-of"]),
    ("home is a file", ["status", "--home", "flights.parquet"], 2, ["--home", "is a file"]),
    ("project file that does not exist", ["status", "--project", "nope.yaml"], 2,
     ["nope.yaml", "modelloop init"]),
    ("project file is a folder", ["status", "--project", "."], 2, ["no project file"]),
    ("port out of range", ["serve", "--port", "99999"], 2, ["--port"]),
    ("host that is no address", ["serve", "--host", "999.1.1.1"], 2, ["--host 999.1.1.1"]),
    ("version that is not a number", ["gate", "abc"], 2, ["version"]),
    ("version zero", ["gate", "0"], 2, ["version"]),
    ("version that does not exist", ["gate", "99"], 1, ["99"]),
    ("serve before any champion", ["serve", "--port", "1"], 1, ["no champion", "modelloop train"]),
    ("monitor an empty log", ["monitor"], 1, ["prediction log is empty"]),
    ("score a file that does not exist", ["score", "nope.csv", "--out", "out.csv"], 1,
     ["nope.csv"]),
    ("score with an engine that does not exist", ["score", "flights.parquet", "--out", "o.csv",
                                                  "--engine", "warp"], 2, ["--engine", "warp"]),
    ("score into an unknown format", ["score", "flights.parquet", "--out", "out.xlsx"], 2,
     ["out.xlsx", ".parquet"]),
    ("score zero rows a chunk", ["score", "flights.parquet", "--chunk-rows", "0"], 2,
     ["--chunk-rows"]),
    ("labels from a file that does not exist", ["labels", "ingest", "nope.csv"], 1,
     ["nope.csv", "no such file"]),
    ("labels from a folder", ["labels", "ingest", "."], 1, ["not a file"]),
    ("labels from a spreadsheet", ["labels", "ingest", "labels.xlsx"], 1,
     ["labels.xlsx", "must be CSV", "or Parquet"]),
    ("labels without the target", ["labels", "ingest", "ids.csv"], 1, ["'delayed'"]),
    ("labels of a third kind", ["labels", "ingest", "three.csv"], 1,
     ["'delayed'", "must be 0 or 1", "rows [2]", "e.g. 2)"]),
    ("init from a table that does not exist", ["init", "--from", "nope.csv", "--target", "y",
                                               "new"], 1, ["nope.csv", "no such file"]),
    ("init from a table without the target", ["init", "--from", "flights.parquet", "--target",
                                              "late", "new"], 2, ["--target late", "no such column"]),
    ("init from a table without --target", ["init", "--from", "flights.parquet", "new"], 2,
     ["--target"]),
    ("init with --target but no table", ["init", "--target", "delayed", "new"], 2,
     ["--target", "--from"]),
    ("init with a task that does not exist", ["init", "--from", "flights.parquet", "--target",
                                              "delayed", "--task", "ranking", "new"], 2, ["--task"]),
    ("rollback without a reason", ["rollback"], 2, ["--reason"]),
    ("rollback with no champion", ["rollback", "--reason", "bad"], 1, ["has no champion"]),
    ("rollback to version zero", ["rollback", "--reason", "x", "--to", "0"], 2, ["--to"]),
    ("replay no weeks", ["demo", "--weeks", "0", "--dir", "demo-dir"], 2, ["--weeks"]),
    ("unknown command", ["trian"], 2, ["trian"]),
    ("unknown option", ["train", "--asof", "2024-03-01"], 2, ["--asof"]),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("mistakes")
    build_flights().to_parquet(directory / "flights.parquet", index=False)
    (directory / "modelloop.yaml").write_text(yaml.safe_dump(RAW_CONFIG), encoding="utf-8")
    (directory / "labels.xlsx").write_bytes(b"PK\x03\x04 not really a spreadsheet")
    (directory / "ids.csv").write_text("flight_id\nF0-00001\n", encoding="utf-8")
    (directory / "three.csv").write_text("flight_id,delayed\nF0-00001,1\nF0-00002,2\n",
                                         encoding="utf-8")
    return directory


def _invoke(args: list[str], cwd: Path) -> tuple[int, str]:
    import os

    runner = CliRunner()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(app, args, env={"COLUMNS": "200", "MODELLOOP_HOME": ""})
    finally:
        os.chdir(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"modelloop {' '.join(args)} raised {result.exception!r}")
    return result.exit_code, result.output


def _assert_one_clear_message(output: str, code: int, expected: int, words: list[str]) -> None:
    assert "Traceback" not in output, output
    assert code == expected, (code, output)
    flat = " ".join(output.split())
    for word in words:
        assert word in flat, (word, output)


@pytest.mark.parametrize(("change", "args", "expected", "words"),
                         [case[1:] for case in BAD_PROJECT_FILES],
                         ids=[case[0] for case in BAD_PROJECT_FILES])
def test_a_bad_project_file_is_one_message(
        workdir: Path, tmp_path: Path, change: Change, args: list[str], expected: int,
        words: list[str]) -> None:
    raw = copy.deepcopy(RAW_CONFIG)
    raw["data"]["source"] = str(workdir / "flights.parquet")
    change(raw)
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    code, output = _invoke([*args, "--as-of", "2024-03-01"] if args == ["train"] else args,
                           tmp_path)
    _assert_one_clear_message(output, code, expected, words)
    if expected == 2 and args == ["status"]:
        assert "modelloop.yaml" in output  # the file is named


@pytest.mark.parametrize(("args", "expected", "words"), [case[1:] for case in BAD_ARGUMENTS],
                         ids=[case[0] for case in BAD_ARGUMENTS])
def test_a_bad_argument_is_one_message(
        workdir: Path, args: list[str], expected: int, words: list[str]) -> None:
    code, output = _invoke(args, workdir)
    _assert_one_clear_message(output, code, expected, words)


@pytest.mark.parametrize("text", ["not yaml: [", "- a\n- list\n", ""],
                         ids=["broken YAML", "a list", "an empty file"])
def test_a_project_file_that_is_not_a_mapping_is_one_message(tmp_path: Path, text: str) -> None:
    (tmp_path / "modelloop.yaml").write_text(text, encoding="utf-8")
    code, output = _invoke(["status"], tmp_path)
    _assert_one_clear_message(output, code, 2, ["modelloop.yaml"])


@pytest.mark.parametrize(
    ("args", "expected", "words"),
    [
        (["train", "--as-of", "NaT"], 2, ["--as-of"]),
        (["monitor", "--as-of", "NaT"], 2, ["--as-of"]),
        (["status", "--home", "flights.parquet"], 2, ["--home"]),
        (["serve", "--port", "99999"], 2, ["--port"]),
    ],
    ids=["train as-of NaT", "monitor as-of NaT", "home is a file", "port out of range"],
)
def test_the_first_reported_tracebacks_are_messages_in_a_real_process(
        workdir: Path, args: list[str], expected: int, words: list[str]) -> None:
    done = run_cli(*args, cwd=workdir, check=False, timeout=120)
    _assert_one_clear_message(done.stdout + done.stderr, done.returncode, expected, words)


def test_a_window_too_long_for_the_calendar_is_one_message_in_a_real_process(
        workdir: Path, tmp_path: Path) -> None:
    raw = copy.deepcopy(RAW_CONFIG)
    raw["data"]["source"] = str(workdir / "flights.parquet")
    raw["training"]["window"] = "1000000d"
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    done = run_cli("train", "--as-of", "2024-03-01", cwd=tmp_path, check=False, timeout=120)
    _assert_one_clear_message(done.stdout + done.stderr, done.returncode, 2, ["training.window"])
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr


def test_a_port_already_in_use_is_one_message(workdir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, output = _invoke(["serve", "--port", str(port)], workdir)
    _assert_one_clear_message(output, code, 1, [f"--port {port}", "another --port"])
