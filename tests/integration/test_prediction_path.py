"""One prediction path: training, the gate, the server and plain MLflow give the same numbers
for the same rows, for an estimator without native missing-value support, when a missing
category is exactly what carries the signal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelloop.project import open_project
from tests.integration.conftest import cli_json

pytestmark = pytest.mark.integration

START = datetime(2024, 1, 1)

PROJECT = """\
name: channels
task: classification
data:
  source: data.parquet
  timestamp: event_time
  target: converted
  id: row_id
  features:
    numeric: [visits, age]
    categorical: [channel, region]
model:
  estimator: sklearn.linear_model.LogisticRegression
  params: {max_iter: 500}
training:
  window: 40d
evaluation:
  metric: roc_auc
  holdout: 10d
gate:
  floor: 0.55
monitoring:
  label_delay: 1d
"""


def channel_data(days: int = 60, per_day: int = 200, seed: int = 3) -> pd.DataFrame:
    """A missing channel means 85% converted; every known channel about 20%."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    minutes = np.sort(rng.integers(0, days * 1440, n))
    channel = rng.choice(np.array(["web", "mail", "ads", None], dtype=object), n, p=[0.35, 0.3, 0.2, 0.15])
    missing = pd.isna(channel)
    converted = np.where(missing, rng.random(n) < 0.85, rng.random(n) < 0.2).astype("int64")
    return pd.DataFrame({
        "row_id": [f"r{i}" for i in range(n)],
        "event_time": [START + timedelta(minutes=int(m)) for m in minutes],
        "visits": rng.integers(1, 20, n).astype("float64"),
        "age": np.where(rng.random(n) < 0.05, np.nan, rng.integers(18, 80, n).astype("float64")),
        "channel": channel,
        "region": rng.choice(["n", "s", "e", "w"], n),
        "converted": converted,
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("channels")
    frame = channel_data()
    frame.to_parquet(directory / "data.parquet", index=False)
    (directory / "modelloop.yaml").write_text(PROJECT, encoding="utf-8")
    result = cli_json("train", "--as-of", "2024-03-01", cwd=directory)
    assert result["decision"]["outcome"] == "promoted", result
    return {"dir": directory, "frame": frame, "train": result}


def plain_mlflow(directory: Path, csv: Path) -> list[float]:
    """Plain MLflow in a process where modelloop cannot even be imported, on a frame read
    straight from CSV (ints where training saw floats, gaps read as NaN)."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["modelloop"] = None  # importing modelloop raises in this process
        import mlflow, pandas as pd
        mlflow.set_tracking_uri("sqlite:///{directory / '.modelloop' / 'mlflow.db'}")
        model = mlflow.pyfunc.load_model("models:/channels@champion")
        print(json.dumps(model.predict(pd.read_csv({str(csv)!r})).tolist()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MLFLOW_LOGGING_LEVEL": "ERROR"}, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_missing_category_means_what_training_learned(trained: dict[str, Any], server_factory: Any) -> None:
    directory, frame = trained["dir"], trained["frame"]
    later = frame[frame["event_time"] > START + timedelta(days=55)].head(400).copy()
    later["visits"] = later["visits"].astype("int64")  # a CSV user's ints
    csv = directory / "later.csv"
    later.to_csv(csv, index=False)

    from_mlflow = np.array(plain_mlflow(directory, csv))
    missing = later["channel"].isna().to_numpy()
    assert missing.sum() > 30
    # What the training data says: ~85% of missing-channel rows convert, ~20% of the rest.
    assert 0.75 < from_mlflow[missing].mean() < 0.95
    assert from_mlflow[~missing].mean() < 0.35

    server = server_factory(directory)
    body = later.drop(columns=["converted"]).to_json(orient="split", index=False, date_format="iso")
    answer = httpx.post(f"{server.url}/invocations", content=b'{"dataframe_split": ' + body.encode() + b"}",
                        headers={"content-type": "application/json"}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == pytest.approx(from_mlflow.tolist(), abs=1e-12)
    csv_answer = httpx.post(f"{server.url}/invocations", content=csv.read_bytes(),
                            headers={"content-type": "text/csv"}, timeout=60)
    assert csv_answer.status_code == 200, csv_answer.text
    assert csv_answer.json()["predictions"] == pytest.approx(from_mlflow.tolist(), abs=1e-12)


def test_the_holdout_score_at_training_is_the_score_the_gate_sees(trained: dict[str, Any]) -> None:
    from modelloop.gate.policy import predict
    from modelloop.stats import score

    project = open_project(trained["dir"] / "modelloop.yaml")
    windows = trained["train"]["windows"]
    holdout = project.source.load(pd.Timestamp(windows["holdout_start"]).to_pydatetime(),
                                  pd.Timestamp(windows["holdout_end"]).to_pydatetime())
    registered = predict(project.registry, "channels", 1, holdout)
    assert score("roc_auc", holdout["converted"], registered) == pytest.approx(
        trained["train"]["holdout_score"], abs=1e-12)
    served = project.load_served_model(1).predict(holdout)
    assert served.tolist() == pytest.approx(registered.tolist(), abs=1e-12)
