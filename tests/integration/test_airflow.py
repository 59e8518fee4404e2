"""`modelloop export airflow` in a real Airflow 3.3: the file imports into a DagBag with the
project's schedules, and a DAG run runs modelloop, or is skipped while the pipeline's lease is
held elsewhere.

Airflow lives in its own virtualenv (it pins much of what modelloop uses): $MODELLOOP_AIRFLOW_PYTHON
names its python, else one is built once under ~/.cache/modelloop-tests and reused. Airflow runs
in subprocesses with a home, a database and a DAG folder of the test's own.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelloop.orchestration import RunRequest
from modelloop.project import open_project
from tests.conftest import RAW_CONFIG
from tests.integration.conftest import CLI, cli_json, run_cli

pytestmark = pytest.mark.integration

AIRFLOW_SPEC = "apache-airflow==3.3.*"
AIRFLOW_VENV = Path.home() / ".cache" / "modelloop-tests" / "airflow-3.3"
#: Written once pip has finished: a virtualenv without it was left half built, and is rebuilt.
_BUILT = ".modelloop-built"


def _step(command: list[str], what: str, timeout: float) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: `{shlex.join(command)}` took over {timeout:.0f} s", pytrace=False)
    if done.returncode != 0:
        output = "\n".join(
            line for line in (done.stdout + done.stderr).splitlines() if "is ignored" not in line
        )
        pytest.fail(
            f"{what}: `{shlex.join(command)}` exited {done.returncode}. Set "
            f"MODELLOOP_AIRFLOW_PYTHON to a python with {AIRFLOW_SPEC} installed, or fix this:\n"
            f"{output[-3000:]}",
            pytrace=False,
        )


def _build_airflow_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    built = venv / _BUILT
    if python.is_file() and built.is_file() and built.read_text() == AIRFLOW_SPEC:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    what = f"building the Airflow virtualenv at {venv}"
    _step([sys.executable, "-m", "venv", str(venv)], what, timeout=300)
    _step([str(python), "-m", "pip", "install", "-q", AIRFLOW_SPEC], what, timeout=1200)
    built.write_text(AIRFLOW_SPEC)
    return python


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    given = os.environ.get("MODELLOOP_AIRFLOW_PYTHON")
    python = Path(given) if given else _build_airflow_venv(AIRFLOW_VENV)
    where = f"$MODELLOOP_AIRFLOW_PYTHON ({given})" if given else str(python)
    try:
        probe = subprocess.run(
            [str(python), "-c", "import airflow; print(airflow.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        version, error = probe.stdout.strip(), probe.stderr[-500:]
    except OSError as exc:
        version, error = "", str(exc)
    if not version.startswith("3.3."):
        pytest.fail(
            f"{where} does not import Airflow 3.3 (got {version or error!r}): "
            f"point it at a python with {AIRFLOW_SPEC} installed",
            pytrace=False,
        )
    return python


#: Prints, as its last line, what the DagBag made of the DAG folder (argv[1]).
_DAGBAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    [task] = dag.tasks
    dags[dag_id] = {
        "cron": getattr(dag.timetable, "expression", None),
        "timezone": dag.timezone.name,
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tags": sorted(dag.tags),
        "doc_md": dag.doc_md,
        "task_id": task.task_id,
        "bash_command": task.bash_command,
        "cwd": task.cwd,
        "env": task.env,
        "retries": task.retries,
        "retry_delay": task.retry_delay.total_seconds(),
        "retry_exponential_backoff": task.retry_exponential_backoff,
        "skip_on_exit_code": list(task.skip_on_exit_code),
    }
print(json.dumps({"errors": bag.import_errors, "dags": dags}))
"""

#: Runs one DAG (argv[2]) of the folder (argv[1]) with dag.test(); prints the states.
_DAG_TEST = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
run = bag.get_dag(sys.argv[2]).test()
tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print(json.dumps({"run": str(run.state), "tasks": tasks}))
"""


class Airflow:
    """An Airflow of the test's own: its home, database and DAG folder under `root`."""

    def __init__(self, python: Path, root: Path) -> None:
        self.python = python
        self.home = root / "airflow-home"
        self.dags = root / "dags"
        self.home.mkdir(parents=True)

    def _env(self) -> dict[str, str]:
        # Nothing of the caller's Airflow or Python setup leaks in; modelloop's own state folder
        # is the project's (.modelloop beside it), as in run_cli.
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "PYTHON")) and key != "MODELLOOP_HOME"
        }
        return {
            **env,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
        }

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.python), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._env(),
            cwd=self.home,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)[:80]} exited {done.returncode}:\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def script(self, code: str, *args: str) -> tuple[Any, str]:
        """Run `code` with Airflow's python: the JSON its last line prints, and its whole log."""
        done = self.run("-c", code, *args)
        log = f"{done.stdout}\n{done.stderr}"
        try:
            return json.loads(done.stdout.strip().splitlines()[-1]), log
        except (IndexError, json.JSONDecodeError):
            raise AssertionError(f"no result from Airflow:\n{log[-8000:]}") from None

    def dagbag(self) -> Any:
        return self.script(_DAGBAG, str(self.dags))[0]

    def migrate(self) -> None:
        """`airflow db migrate`: dag.test() records its run in the database."""
        self.run("-m", "airflow", "db", "migrate")

    def test_dag(self, dag_id: str) -> tuple[Any, str]:
        return self.script(_DAG_TEST, str(self.dags), dag_id)


@pytest.fixture
def airflow(airflow_python: Path, tmp_path: Path) -> Airflow:
    return Airflow(airflow_python, tmp_path)


def _write_project(folder: Path, **changes: Any) -> Path:
    folder.mkdir(parents=True)
    raw = {**RAW_CONFIG, **changes}
    path = folder / "modelloop.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_exported_file_imports_into_airflow_with_the_projects_schedule(
    airflow: Airflow, tmp_path: Path
) -> None:
    project = _write_project(
        tmp_path / "my project",
        schedule={"monitor": "30 6 * * mon-fri", "train": "@weekly", "score": "0 * * * *"},
        schedule_timezone="America/New_York",
        retries={"count": 2, "backoff": "90s"},
        scoring={"input": "new.parquet", "output": "scored.parquet"},
    )
    exported = cli_json("export", "airflow", "--out", str(airflow.dags), "--project", str(project),
                        cwd=tmp_path)
    assert exported["dag_file"] == str(airflow.dags / "modelloop_flights.py")

    bag = airflow.dagbag()
    assert bag["errors"] == {}
    expected = {"monitor": "30 6 * * mon-fri", "train": "0 0 * * 0", "score": "0 * * * *"}
    assert set(bag["dags"]) == {f"modelloop__flights__{p}" for p in expected}
    assert sorted(d["dag_id"] for d in exported["dags"]) == sorted(bag["dags"])
    for pipeline, cron in expected.items():
        dag = bag["dags"][f"modelloop__flights__{pipeline}"]
        assert dag["cron"] == cron and dag["timezone"] == "America/New_York"
        assert dag["catchup"] is False and dag["max_active_runs"] == 1
        assert dag["tags"] == ["flights", "modelloop"] and str(project) in dag["doc_md"]
        assert dag["task_id"] == pipeline
        assert shlex.split(dag["bash_command"]) == [
            *CLI, pipeline, "--project", str(project), "--trigger", "airflow"
        ]
        assert dag["cwd"] == str(project.parent) and dag["env"] is None
        assert dag["retries"] == 2 and dag["retry_delay"] == 90.0
        assert dag["retry_exponential_backoff"] == 2.0
        assert dag["skip_on_exit_code"] == [75]


def test_a_bad_cron_never_becomes_a_dag_that_silently_never_runs(
    airflow: Airflow, tmp_path: Path
) -> None:
    # A cron with the wrong shape: modelloop refuses the project file, nothing is written.
    project = _write_project(tmp_path / "short", schedule={"monitor": "0 6 * *"})
    refused = run_cli("export", "airflow", "--out", str(airflow.dags), "--project", str(project),
                      cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "schedule.monitor" in refused.stderr
    assert not airflow.dags.exists()

    # 'last' is APScheduler's (which `modelloop up` uses), not cron's: either modelloop refuses
    # it too, or Airflow's DagBag names the file as an import error. Today it is the DagBag.
    project = _write_project(
        tmp_path / "last", schedule={"monitor": "0 6 last * *", "train": "0 6 * * 1"}
    )
    done = run_cli("export", "airflow", "--out", str(airflow.dags), "--project", str(project),
                   cwd=tmp_path, check=False)
    if done.returncode == 0:
        bag = airflow.dagbag()
        [(where, error)] = bag["errors"].items()
        assert where.endswith("modelloop_flights.py") and "0 6 last * *" in error
        assert list(bag["dags"]) == ["modelloop__flights__train"]
    else:
        assert done.returncode == 2 and "schedule.monitor" in done.stderr


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A finished demo (two weeks served and monitored), its failed tasks not retried."""
    directory = tmp_path / "demo"
    run_cli("demo", "--dir", str(directory), "--weeks", "2", cwd=tmp_path)
    project = directory / "modelloop.yaml"
    raw = yaml.safe_load(project.read_text())
    raw["retries"] = {"count": 0}  # dag.test() would wait out the retry delay of a failure
    project.write_text(yaml.safe_dump(raw))
    return project


def _monitor_runs(project: Path) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = cli_json("runs", "--pipeline", "monitor", "--project", str(project),
                                          cwd=project.parent)
    return runs


def test_a_dag_run_runs_modelloop_or_is_skipped_while_the_lease_is_held(
    airflow: Airflow, demo: Path, tmp_path: Path
) -> None:
    exported = cli_json("export", "airflow", "--out", str(airflow.dags), "--project", str(demo),
                        cwd=tmp_path)
    [dag] = exported["dags"]
    assert dag["dag_id"] == "modelloop__flight-delays__monitor" and dag["schedule"] is None
    airflow.migrate()
    before = {run["id"] for run in _monitor_runs(demo)}

    # Another process (here, this test) is monitoring: the task exits 75 and Airflow skips it.
    project = open_project(demo)
    with project.ledger.run("monitor", RunRequest(trigger="the test holds the lease")):
        skipped, log = airflow.test_dag(dag["dag_id"])
    assert skipped == {"run": "success", "tasks": {"monitor": "skipped"}}, log[-4000:]
    [attempt] = [run for run in _monitor_runs(demo) if run["id"] not in before
                 and run["trigger"] == "airflow"]
    assert attempt["status"] == "skipped" and attempt["origin"] == "airflow"

    # Nobody else is: the task runs `modelloop monitor`, which writes a report and records it.
    done, log = airflow.test_dag(dag["dag_id"])
    assert done == {"run": "success", "tasks": {"monitor": "success"}}, log[-4000:]
    newest = _monitor_runs(demo)[0]
    assert newest["trigger"] == "airflow" and newest["origin"] == "airflow"
    assert newest["status"] == "succeeded" and newest["id"] > attempt["id"]
    assert Path(newest["produced"]["report"]).is_file()
    assert newest["produced"]["report"].startswith(str(demo.parent / ".modelloop" / "reports"))
