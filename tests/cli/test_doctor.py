"""`modelloop doctor` checks each backend for real (the project file, the data, MLflow's store, the
artifact root, the metadata DB and its migrations, the log storage) and names what fails, fast
and without showing a password; `modelloop status` names the backends in use."""

from __future__ import annotations

import copy
import json
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from modelloop.cli.app import app
from tests.conftest import RAW_CONFIG

pytestmark = pytest.mark.integration  # a real MLflow store under a real project file

CHECKS = ["project file", "data source", "tracking store", "artifact store", "migrations",
          "metadata DB", "prediction log storage"]


@pytest.fixture(autouse=True)
def _no_backend_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODELLOOP_HOME", "MODELLOOP_TRACKING_URI", "MODELLOOP_DB_URL", "MODELLOOP_STORAGE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def project_file(tmp_path_factory: pytest.TempPathFactory, _flights_once: pd.DataFrame) -> Path:
    directory = tmp_path_factory.mktemp("doctor")
    _flights_once.to_parquet(directory / "flights.parquet", index=False)
    path = directory / "modelloop.yaml"
    path.write_text(yaml.safe_dump(copy.deepcopy(RAW_CONFIG)), encoding="utf-8")
    return path


def _invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})


def _doctor(project_file: Path, home: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = _invoke("doctor", "--project", str(project_file), "--home", str(home), "--json", env=env)
    return result.exit_code, json.loads(result.stdout)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


@pytest.fixture(scope="module")
def healthy_home(project_file: Path) -> Path:
    """A state folder the doctor has checked once (MLflow's store is made on first use)."""
    home = project_file.parent / ".modelloop"
    _invoke("doctor", "--project", str(project_file), "--home", str(home), "--json")
    return home


def test_a_healthy_project_passes_every_check(project_file: Path, healthy_home: Path) -> None:
    code, report = _doctor(project_file, healthy_home)
    assert code == 0 and report["ok"], report
    assert [check["name"] for check in report["checks"]] == CHECKS
    checks = _by_name(report)
    assert "3,000 rows" in checks["data source"]["detail"]
    assert checks["migrations"]["detail"] == "at revision 0004 (head)"
    assert all(check["seconds"] >= 0 and check["problem"] is None for check in report["checks"])
    # Nothing is left behind by the write checks.
    assert not list(healthy_home.rglob(".modelloop-doctor-*"))
    table = _invoke("doctor", "--project", str(project_file), "--home", str(healthy_home))
    assert table.exit_code == 0 and "all checks passed" in table.output, table.output


def test_status_names_the_backends_with_their_kinds(project_file: Path, healthy_home: Path) -> None:
    shown = _invoke("status", "--project", str(project_file), "--home", str(healthy_home), "--json")
    assert shown.exit_code == 0, shown.output
    backends = json.loads(shown.stdout)["backends"]
    assert {role: b["kind"] for role, b in backends.items()} == {
        "tracking": "sqlite", "artifacts": "file", "metadata": "sqlite", "logs": "file", "data": "file"}
    assert backends["metadata"] == {"kind": "sqlite", "origin": "default",
                                    "location": f"sqlite:///{healthy_home / 'modelloop.db'}"}
    assert backends["data"]["origin"] == "project file"
    plain = _invoke("status", "--project", str(project_file), "--home", str(healthy_home))
    assert "backends:" in plain.output and f"metadata: sqlite sqlite:///{healthy_home}" in plain.output


def test_an_artifact_root_that_cannot_be_a_folder_fails_naming_it(project_file: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "mlartifacts").write_text("a file where the folder should be")  # root ignores chmod
    code, report = _doctor(project_file, home)
    assert code == 1 and not report["ok"]
    failed = [check for check in report["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == ["artifact store"]
    assert failed[0]["problem"] == "cannot write"
    assert failed[0]["detail"].startswith(f"artifact store (file at {(home / 'mlartifacts').as_uri()})")


def test_log_storage_that_cannot_be_written_fails_naming_it(
    project_file: Path, healthy_home: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "storage"
    blocker.write_text("not a folder")
    code, report = _doctor(project_file, healthy_home, {"MODELLOOP_STORAGE": str(blocker)})
    check = _by_name(report)["prediction log storage"]
    assert code == 1 and not check["ok"] and check["problem"] == "cannot write"
    assert check["location"] == str(blocker) and str(blocker) in check["detail"]
    table = _invoke("doctor", "--project", str(project_file), "--home", str(healthy_home),
                    env={"MODELLOOP_STORAGE": str(blocker)})
    assert table.exit_code == 1 and "FAILED" in table.output and "1 of 7 checks failed" in table.output


def test_an_unreachable_postgres_fails_fast_and_never_shows_the_password(
    project_file: Path, healthy_home: Path
) -> None:
    url = f"postgresql://user:secret@127.0.0.1:{_closed_port()}/x"
    started = time.monotonic()
    result = _invoke("doctor", "--project", str(project_file), "--home", str(healthy_home), "--json",
                     env={"MODELLOOP_DB_URL": url})
    assert time.monotonic() - started < 15
    assert result.exit_code == 1 and "secret" not in result.output
    checks = _by_name(json.loads(result.stdout))
    for name in ("migrations", "metadata DB"):
        assert not checks[name]["ok"] and checks[name]["problem"] == "cannot connect"
        assert checks[name]["location"] == url.replace("secret", "***")
        assert checks[name]["detail"].startswith(f"{name} (postgresql at postgresql://user:***@")
    assert checks["tracking store"]["ok"] and checks["prediction log storage"]["ok"]
    table = _invoke("doctor", "--project", str(project_file), "--home", str(healthy_home),
                    env={"MODELLOOP_DB_URL": url})
    assert table.exit_code == 1 and "secret" not in table.output


def test_an_unreachable_tracking_server_fails_naming_it_in_bounded_time(
    project_file: Path, healthy_home: Path
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    env = {"MODELLOOP_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    started = time.monotonic()
    code, report = _doctor(project_file, healthy_home, env)
    assert time.monotonic() - started < 15
    check = _by_name(report)["tracking store"]
    assert code == 1 and not check["ok"] and check["problem"] == "cannot connect"
    assert check["kind"] == "http" and check["detail"].startswith(f"tracking store (http at {url})")


def test_a_broken_project_file_is_a_failed_check_naming_it(tmp_path: Path) -> None:
    broken = tmp_path / "modelloop.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")
    code, report = _doctor(broken, tmp_path / "home")
    assert code == 1 and [check["name"] for check in report["checks"]] == ["project file"]
    [check] = report["checks"]
    assert not check["ok"] and str(broken) in check["detail"] and "not valid YAML" in check["detail"]


def test_a_failing_command_never_prints_a_backend_password(project_file: Path, healthy_home: Path) -> None:
    # A tracking server nobody listens on: MLflow's error quotes the URL it was given, password
    # and all; the CLI masks it.
    url = f"http://alice:pa55word@127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    result = _invoke("status", "--project", str(project_file), "--home", str(healthy_home),
                     env={"MODELLOOP_TRACKING_URI": url})
    assert time.monotonic() - started < 60
    assert result.exit_code == 1, result.output
    assert "error:" in result.output and "pa55word" not in result.output
    assert "alice:***@127.0.0.1" in result.output
