"""Gates racing on one model, as two processes on a real MLflow store: promotions are
serialized, so exactly one version is tagged champion, the one the alias names, and `previous`
is the version that served before it. The lock is a lease row in the metadata DB: the race runs
with both databases on SQLite, and on PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import CLI, cli_json, run_cli
from tests.integration.synthetic import day, make_frame, write_project
from tests.postgres import BACKENDS, POSTGRES_MLFLOW_URL, fresh_database, server_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=BACKENDS)
def tracking(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The MLflow store the CLI will use: the embedded one, or fresh PostgreSQL databases for
    both stores, named to the CLI the way a user names them."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / '.modelloop' / 'mlflow.db'}"
        return
    with fresh_database(server_url()) as state, fresh_database(server_url(POSTGRES_MLFLOW_URL)) as uri:
        monkeypatch.setenv("MODELLOOP_DB_URL", state)
        monkeypatch.setenv("MODELLOOP_TRACKING_URI", uri)
        yield uri


def test_two_gates_at_once_leave_one_champion_named_by_the_alias(tmp_path: Path, tracking: str) -> None:
    make_frame(days=60).to_parquet(tmp_path / "data.parquet", index=False)
    write_project(tmp_path, estimator="sklearn.linear_model.LogisticRegression", params="{C: 1.0}")
    at = day(50).isoformat()
    cli_json("train", "--as-of", at, cwd=tmp_path)  # v1, the champion
    for _ in range(2):
        run_cli("train", "--as-of", at, "--no-gate", cwd=tmp_path)  # v2, v3: candidates
    racers = [
        subprocess.Popen([*CLI, "gate", str(v), "--json"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for v in (2, 3)
    ]
    outcomes = [r.communicate(timeout=300) for r in racers]
    assert all(r.returncode == 0 for r in racers), outcomes

    import mlflow

    # Both URIs: another test in this process may have left MLflow's global registry URI set.
    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    versions = client.search_model_versions("name='synthetic-loop'")
    champions = [int(v.version) for v in versions if v.tags.get("modelloop.status") == "champion"]
    alias = int(client.get_model_version_by_alias("synthetic-loop", "champion").version)
    assert champions == [alias]
    status = cli_json("status", cwd=tmp_path)
    assert status["champion"]["version"] == alias
    moves = [e for e in cli_json("history", cwd=tmp_path) if e["action"] in ("promoted", "rejected")]
    served = [e for e in moves if e["action"] == "promoted"]
    # Each promotion names the champion it replaced: a chain from v1 to the alias, no fork.
    chain = {e["version"]: e["from_version"] for e in served}
    assert alias in chain
    previous = int(client.get_model_version_by_alias("synthetic-loop", "previous").version)
    assert previous == chain[alias] and previous != alias
    assert len({e["from_version"] for e in served}) == len(served)
