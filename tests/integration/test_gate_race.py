"""Gates racing on one model, as two processes on a real MLflow store: promotions are
serialized, so exactly one version is tagged champion, the one the alias names, and `previous`
is the version that served before it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import CLI, cli_json, run_cli
from tests.integration.synthetic import day, make_frame, write_project

pytestmark = pytest.mark.integration


def test_two_gates_at_once_leave_one_champion_named_by_the_alias(tmp_path: Path) -> None:
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
    uri = f"sqlite:///{tmp_path / '.modelloop' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
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
