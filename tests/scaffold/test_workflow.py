"""The GitHub Actions workflow `modelloop init` writes: valid for GitHub (the workflow schema that
check-jsonschema vendors, so the check runs offline), triggered by the project's schedule and its
data, training and gating with the team's shared state, and never overwritten without --force."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import modelloop
from modelloop.config import ProjectConfig, load_config
from modelloop.errors import ModelloopError
from modelloop.scaffold.workflow import DEFAULT_CRON, workflow_path, write_workflow
from tests.integration.conftest import cli_json, run_cli
from tests.scaffold.conftest import air_passengers, write

EXAMPLE = Path(modelloop.__file__).parent / "examples" / "flights.yaml"
SECRETS = ("MODELLOOP_TRACKING_URI", "MODELLOOP_DB_URL", "MODELLOOP_STORAGE")


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its vendored GitHub workflow schema (no network needed)."""
    binary = Path(sys.executable).parent / "check-jsonschema"
    command = [str(binary)] if binary.exists() else [sys.executable, "-m", "check_jsonschema"]
    return subprocess.run(
        [*command, "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_valid(path: Path) -> None:
    done = validate(path)
    assert done.returncode == 0, f"{path} is not a valid GitHub workflow:\n{done.stdout}{done.stderr}"


def load(path: Path) -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 (PyYAML) reads the key `on` as true
    return doc


def steps(doc: dict[Any, Any], job: str) -> list[str]:
    return [str(step.get("run", step.get("uses"))) for step in doc["jobs"][job]["steps"]]


def with_project_text(project: Path, extra: str) -> ProjectConfig:
    """The example project file with `extra` appended, as the user would write it."""
    path = project / "modelloop.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def example(tmp_path: Path) -> tuple[Path, ProjectConfig]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "modelloop.yaml").write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    return project, load_config(project / "modelloop.yaml")


# -- through the real CLI ---------------------------------------------------------------------


@pytest.mark.integration
def test_the_example_init_writes_a_valid_workflow_that_trains_and_gates(tmp_path: Path) -> None:
    done = run_cli("init", "flights", cwd=tmp_path)
    path = tmp_path / "flights" / ".github" / "workflows" / "modelloop.yml"
    assert f"wrote {Path('flights') / '.github' / 'workflows' / 'modelloop.yml'}" in done.stdout
    assert_valid(path)
    doc = load(path)
    on = doc["on"]
    assert "workflow_dispatch" in on
    assert on["push"]["paths"] == ["modelloop.yaml", "data/flights.parquet", "data/**"]
    assert [entry["cron"] for entry in on["schedule"]] == [DEFAULT_CRON]  # weekly: no schedule.train
    assert "weekly" in path.read_text()
    assert doc["permissions"] == {"contents": "read"}
    assert doc["env"] == {name: f"${{{{ secrets.{name} }}}}" for name in SECRETS}
    install = f'pip install "modelloop>={modelloop.__version__}"'
    assert install in steps(doc, "test") and "modelloop status --json" in steps(doc, "test")
    assert any(step.startswith("modelloop test --allow-none") for step in steps(doc, "test"))
    train = doc["jobs"]["train-and-gate"]
    assert train["needs"] == "test" and train["concurrency"]["cancel-in-progress"] is False
    assert steps(doc, "train-and-gate")[2:4] == [install, "modelloop train"]
    upload = train["steps"][-1]
    assert upload["uses"] == "actions/upload-artifact@v4" and upload["with"]["path"] == ".modelloop/reports/"
    assert upload["if"] == "always()"  # a failed training's validation report is kept too

    # Run again (the project file is there, so --force): an edited workflow is replaced.
    path.write_text("# edited by the team\n", encoding="utf-8")
    run_cli("init", "flights", "--force", cwd=tmp_path)
    assert_valid(path)


@pytest.mark.integration
def test_the_example_init_keeps_an_existing_workflow_without_force(tmp_path: Path) -> None:
    path = workflow_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("# the team's own workflow\n", encoding="utf-8")
    done = run_cli("init", ".", cwd=tmp_path)  # exit 0: the project is written all the same
    assert (tmp_path / "modelloop.yaml").is_file()
    assert path.read_text(encoding="utf-8") == "# the team's own workflow\n"
    assert "kept" in done.stdout and "--force" in done.stdout


@pytest.mark.integration
def test_init_from_a_table_writes_a_workflow_watching_that_table(tmp_path: Path) -> None:
    write(air_passengers(), tmp_path / "data" / "air.csv")
    result = cli_json("init", "--from", "data/air.csv", "--target", "passengers", ".", cwd=tmp_path)
    path = tmp_path / ".github" / "workflows" / "modelloop.yml"
    assert Path(result["workflow"]) == Path(".github") / "workflows" / "modelloop.yml"
    assert_valid(path)
    doc = load(path)
    assert doc["on"]["push"]["paths"] == ["modelloop.yaml", "data/air.csv", "data/**"]
    assert "modelloop train" in steps(doc, "train-and-gate")

    # Without --force an existing workflow is kept (said on stderr, the JSON stays JSON) ...
    path.write_text("# edited\n", encoding="utf-8")
    (tmp_path / "modelloop.yaml").unlink()
    done = run_cli("init", "--from", "data/air.csv", "--target", "passengers", "--json", ".", cwd=tmp_path)
    assert path.read_text(encoding="utf-8") == "# edited\n"
    assert "kept" in done.stderr
    assert Path(json.loads(done.stdout)["workflow"]) == Path(".github") / "workflows" / "modelloop.yml"
    # ... and with --force it is written anew.
    done = run_cli("init", "--from", "data/air.csv", "--target", "passengers", "--force", ".", cwd=tmp_path)
    assert "GitHub Actions: trains and gates on a schedule and on a data change" in done.stdout
    assert_valid(path)


# -- the schedule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "cron"),
    [
        ("'@daily'", "0 0 * * *"),  # GitHub refuses the shorthands: written as their 5 fields
        ("'@hourly'", "0 * * * *"),
        ("'@weekly'", "0 0 * * 0"),
        ("'30 6 * * 1-5'", "30 6 * * 1-5"),
    ],
)
def test_the_cron_is_the_projects_train_schedule(
    example: tuple[Path, ProjectConfig], given: str, cron: str
) -> None:
    project, _ = example
    config = with_project_text(project, f"\nschedule:\n  train: {given}\n  monitor: '0 7 * * *'\n")
    path = write_workflow(project, config=config, force=False)
    assert_valid(path)
    assert load(path)["on"]["schedule"] == [{"cron": cron}]  # UTC: GitHub's default, no time zone
    assert "schedule.train in modelloop.yaml" in path.read_text(encoding="utf-8")


def test_the_schedule_keeps_the_projects_time_zone(example: tuple[Path, ProjectConfig]) -> None:
    project, _ = example
    config = with_project_text(
        project, "\nschedule:\n  train: '0 6 * * 1'\nschedule_timezone: Europe/Paris\n"
    )
    path = write_workflow(project, config=config, force=False)
    assert_valid(path)
    assert load(path)["on"]["schedule"] == [{"cron": "0 6 * * 1", "timezone": "Europe/Paris"}]


def test_without_a_train_schedule_it_trains_weekly(example: tuple[Path, ProjectConfig]) -> None:
    project, _ = example
    config = with_project_text(project, "\nschedule:\n  monitor: '@daily'\n")  # monitoring only
    path = write_workflow(project, config=config, force=False)
    assert load(path)["on"]["schedule"] == [{"cron": DEFAULT_CRON}]
    assert "weekly" in path.read_text(encoding="utf-8")


# -- the check itself, and what the workflow watches -------------------------------------------


def test_a_broken_workflow_fails_the_check(example: tuple[Path, ProjectConfig]) -> None:
    project, config = example
    path = write_workflow(project, config=config, force=False)
    assert_valid(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    del doc["jobs"]["train-and-gate"]["runs-on"]
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    done = validate(path)
    assert done.returncode != 0
    assert "runs-on" in done.stdout + done.stderr


def test_force_decides_whether_a_workflow_is_replaced(example: tuple[Path, ProjectConfig]) -> None:
    project, config = example
    path = write_workflow(project, config=config, force=False)
    path.write_text("# edited\n", encoding="utf-8")
    with pytest.raises(ModelloopError, match="exists; pass --force"):
        write_workflow(project, config=config, force=False)
    assert path.read_text(encoding="utf-8") == "# edited\n"
    assert write_workflow(project, config=config, force=True) == path
    assert "modelloop train" in steps(load(path), "train-and-gate")


def test_a_source_github_cannot_watch_is_said_not_watched(example: tuple[Path, ProjectConfig]) -> None:
    project, config = example
    cases = {
        "features.sales:load": "is a function",
        "../shared/sales.parquet": "outside this folder",
        str(project.parent / "elsewhere.parquet"): "outside this folder",
    }
    for source, reason in cases.items():
        changed = config.model_copy(update={"data": config.data.model_copy(update={"source": source})})
        path = write_workflow(project, config=changed, force=True)
        assert_valid(path)
        assert load(path)["on"]["push"]["paths"] == ["modelloop.yaml"]
        assert reason in path.read_text(encoding="utf-8")


def test_a_glob_source_watches_its_folder_and_another_project_file_is_named(
    example: tuple[Path, ProjectConfig],
) -> None:
    project, config = example
    source = str(project / "exports" / "2024-*" / "part-*.parquet")  # absolute, inside the project
    changed = config.model_copy(update={"data": config.data.model_copy(update={"source": source})})
    path = write_workflow(project, "flights project.yaml", config=changed, force=False)
    assert_valid(path)
    doc = load(path)
    assert doc["on"]["push"]["paths"] == [
        "flights project.yaml",
        "exports/2024-*/part-*.parquet",
        "exports/**",
    ]
    assert "modelloop train --project 'flights project.yaml'" in steps(doc, "train-and-gate")
