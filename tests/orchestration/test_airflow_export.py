"""`modelloop export airflow`: the DAG file read back as Python (no Airflow needed here; the
integration test imports it into a real Airflow)."""

from __future__ import annotations

import ast
import copy
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modelloop.cli.app import app
from modelloop.config import load_config, parse_config
from modelloop.errors import ConfigError, UsageError
from modelloop.orchestration.airflow import export_airflow, render_airflow_dag
from tests.conftest import RAW_CONFIG

EXE = Path("/opt/venv/bin/modelloop")


def _config(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(RAW_CONFIG)
    raw.update(changes)
    return raw


def _write_project(folder: Path, **changes: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "modelloop.yaml"
    path.write_text(yaml.safe_dump(_config(**changes)))
    return path


def _value(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:  # a call such as datetime.timedelta(seconds=60.0): compared as source
        return ast.unparse(node)


def _calls(text: str, function: str) -> list[dict[str, Any]]:
    """The keyword arguments of every call to `function` in the DAG file, as values."""
    return [
        {keyword.arg: _value(keyword.value) for keyword in node.keywords}
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == function
    ]


def _render(project_file: Path = Path("/srv/flights/modelloop.yaml"), **changes: Any) -> str:
    text = render_airflow_dag(project_file, parse_config(_config(**changes)), EXE)
    compile(text, "modelloop_flights.py", "exec")
    return text


def test_each_scheduled_pipeline_gets_a_dag_in_the_projects_time_zone() -> None:
    text = _render(
        schedule={"monitor": "0 6 * * *", "train": "@weekly"},
        schedule_timezone="Europe/Paris",
        retries={"count": 3, "backoff": "2m"},
    )
    dags = {dag["dag_id"]: dag for dag in _calls(text, "DAG")}
    assert set(dags) == {"modelloop__flights__monitor", "modelloop__flights__train"}
    assert dags["modelloop__flights__monitor"]["schedule"] == "0 6 * * *"
    # modelloop says what a shorthand means (timeutil.CRON_ALIASES): Sunday midnight.
    assert dags["modelloop__flights__train"]["schedule"] == "0 0 * * 0"
    for dag in dags.values():
        assert dag["catchup"] is False and dag["max_active_runs"] == 1
        assert dag["tags"] == ["modelloop", "flights"]
        assert "/srv/flights/modelloop.yaml" in dag["doc_md"]
        assert dag["start_date"] == "START_DATE"
    # Airflow reads a cron schedule in the time zone of the DAG's start date.
    [start] = _calls(text, "pendulum.datetime")
    assert start == {"tz": "Europe/Paris"}

    tasks = {task["task_id"]: task for task in _calls(text, "BashOperator")}
    assert set(tasks) == {"monitor", "train"}
    for pipeline, task in tasks.items():
        assert shlex.split(task["bash_command"]) == [
            str(EXE), pipeline, "--project", "/srv/flights/modelloop.yaml", "--trigger", "airflow"
        ]
        assert task["cwd"] == "/srv/flights"
        assert task["retries"] == 3
        assert task["retry_delay"] == "datetime.timedelta(seconds=120.0)"
        assert task["retry_exponential_backoff"] == 2.0
        assert task["skip_on_exit_code"] == 75  # the lease is held elsewhere: skipped, not failed
        assert "env" not in task


def test_a_project_without_a_schedule_gets_one_monitor_dag_to_trigger_by_hand() -> None:
    text = _render()
    [dag] = _calls(text, "DAG")
    assert dag["dag_id"] == "modelloop__flights__monitor" and dag["schedule"] is None
    [task] = _calls(text, "BashOperator")
    assert shlex.split(task["bash_command"])[1] == "monitor"
    assert "has no schedule" in text and "schedule:" in text  # the comment says how to add one
    [start] = _calls(text, "pendulum.datetime")
    assert start == {"tz": "UTC"}


def test_without_retries_the_task_is_not_retried() -> None:
    [task] = _calls(_render(retries={"count": 0}), "BashOperator")
    assert task["retries"] == 0
    assert "retry_delay" not in task and "retry_exponential_backoff" not in task


@pytest.mark.parametrize(
    "folder", ["with space", "it's", 'say "hi"', "dollar $HOME `x`", "back\\slash", "new\nline"]
)
def test_paths_reach_modelloop_exactly_as_they_are(folder: str) -> None:
    project_file = Path("/srv") / folder / "modelloop.yaml"
    executable = Path("/opt") / folder / "bin" / "modelloop"
    text = render_airflow_dag(project_file, parse_config(_config()), executable)
    compile(text, "modelloop_flights.py", "exec")
    [task] = _calls(text, "BashOperator")
    assert shlex.split(task["bash_command"]) == [
        str(executable), "monitor", "--project", str(project_file), "--trigger", "airflow"
    ]
    assert task["cwd"] == str(project_file.parent)


def test_relative_paths_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = render_airflow_dag(Path("proj/modelloop.yaml"), parse_config(_config()), Path("bin/modelloop"))
    [task] = _calls(text, "BashOperator")
    assert shlex.split(task["bash_command"])[::3] == [
        str(tmp_path / "bin" / "modelloop"), str(tmp_path / "proj" / "modelloop.yaml")
    ]


def test_a_path_airflow_would_read_as_a_template_is_refused() -> None:
    with pytest.raises(UsageError, match=r"\{\{.*Jinja"):
        render_airflow_dag(Path("/srv/{{ ds }}/modelloop.yaml"), parse_config(_config()), EXE)


def test_export_writes_one_importable_file_named_after_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELLOOP_HOME", raising=False)
    project = _write_project(
        tmp_path / "proj",
        name="flight-delays.v2",
        schedule={"score": "@hourly"},
        scoring={"input": "new.parquet", "output": "scored.parquet"},
    )
    path = export_airflow(project, tmp_path / "dags" / "new", executable=EXE)
    assert path == tmp_path / "dags" / "new" / "modelloop_flight_delays_v2.py"
    text = path.read_text()
    assert text.startswith(f"# Generated by `modelloop export airflow` from {str(project)!r}.")
    assert "re-run `modelloop export airflow`" in text.splitlines()[1]
    [dag] = _calls(text, "DAG")
    assert dag["dag_id"] == "modelloop__flight-delays.v2__score"
    assert dag["tags"] == ["modelloop", "flight-delays.v2"]
    [task] = _calls(text, "BashOperator")
    assert "env" not in task
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert path.stat().st_mode & 0o044  # readable by Airflow's user, not only ours

    project.write_text(yaml.safe_dump(_config(name="flight-delays.v2", schedule={"train": "@daily"})))
    assert export_airflow(project, tmp_path / "dags" / "new", executable=EXE) == path
    assert [dag["dag_id"] for dag in _calls(path.read_text(), "DAG")] == [
        "modelloop__flight-delays.v2__train"
    ]


def test_modelloop_home_at_export_time_goes_to_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _write_project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELLOOP_HOME", "state")
    [task] = _calls(export_airflow(project, tmp_path, executable=EXE).read_text(), "BashOperator")
    assert task["env"] == {"MODELLOOP_HOME": str(tmp_path / "state")}
    assert task["append_env"] is True  # and the rest of the worker's environment is kept


def test_a_bad_cron_is_refused_by_the_project_file_before_any_dag_is_written(tmp_path: Path) -> None:
    project = _write_project(tmp_path / "proj", schedule={"monitor": "0 6 * *"})
    with pytest.raises(ConfigError, match=r"schedule\.monitor"):
        export_airflow(project, tmp_path / "dags", executable=EXE)
    assert not (tmp_path / "dags").exists()


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "MODELLOOP_HOME": ""})


def test_the_command_prints_the_file_and_its_dags(tmp_path: Path) -> None:
    project = _write_project(tmp_path / "proj", schedule={"monitor": "@daily"})
    out = tmp_path / "dags"
    done = _invoke("export", "airflow", "--out", str(out), "--project", str(project), "--json")
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload["dag_file"] == str(out / "modelloop_flights.py")
    assert payload["dags"] == [
        {
            "dag_id": "modelloop__flights__monitor",
            "pipeline": "monitor",
            "schedule": "@daily",
            "cron": "0 0 * * *",
            "timezone": "UTC",
        }
    ]
    assert load_config(project).name == "flights"  # the project file is left as it was
    text = _invoke("export", "airflow", "--out", str(out), "--project", str(project))
    assert text.exit_code == 0 and f"wrote {out / 'modelloop_flights.py'}" in text.stdout


@pytest.mark.parametrize("under", ["", "inside"])
def test_an_out_that_is_a_file_is_one_clear_error(tmp_path: Path, under: str) -> None:
    project = _write_project(tmp_path / "proj")
    taken = tmp_path / "dags.py"
    taken.write_text("")
    done = _invoke("export", "airflow", "--out", str(taken / under), "--project", str(project))
    assert done.exit_code == 2
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert "--out" in done.output and str(taken) in done.output and "Traceback" not in done.output
