"""A project whose storage is S3-compatible (MODELLOOP_STORAGE=s3://bucket/prefix), driven through
the real CLI against moto's S3 server on loopback, with the credentials and the endpoint in the
environment as a team sets them: MLflow's artifacts, the prediction log, the labels and the
reports land in the bucket; monitoring reads the log back from it on a machine with an empty
cache; the doctor checks the bucket, and names one that does not exist."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import ServerProcess, cli_json, run_cli
from tests.integration.synthetic import day, make_frame, rows_between, split_body, write_project
from tests.s3 import S3Server, s3_server

pytestmark = pytest.mark.integration

FEATURES = ["x1", "x2", "x3", "seg"]
NAME = "synthetic-loop"


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as found:
        yield found


@pytest.fixture
def storage(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, named to the CLI as a user names it."""
    bucket = server.bucket()
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELLOOP_STORAGE", f"s3://{bucket}/team")
    return bucket


def test_a_project_on_s3_keeps_artifacts_logs_labels_and_reports_in_the_bucket(
    tmp_path: Path, server: S3Server, storage: str
) -> None:
    bucket = storage
    frame = make_frame(days=50)
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    write_project(tmp_path, estimator="sklearn.linear_model.LogisticRegression", params="{C: 1.0}")

    trained = cli_json("train", "--as-of", day(30).isoformat(), cwd=tmp_path)
    assert trained["version"] == 1 and trained["decision"]["outcome"] == "promoted"
    assert any("/MLmodel" in key for key in server.keys(bucket, "team/mlartifacts/"))
    assert not (tmp_path / ".modelloop" / "mlartifacts").exists()

    served = ServerProcess(tmp_path)
    try:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            for d in range(30, 36):
                rows = rows_between(frame, d, d)[["row_id", "event_time", *FEATURES]]
                answer = client.post(
                    "/invocations", content=split_body(rows), headers={"Content-Type": "application/json"}
                )
                assert answer.status_code == 200, answer.text
    finally:
        served.stop()
    logged = server.keys(bucket, f"team/predictions/{NAME}/")
    assert logged and all(key.endswith(".parquet") for key in logged), logged
    assert {key.split("/")[3] for key in logged} == {f"date={day(d).date()}" for d in range(30, 36)}
    wal = tmp_path / ".modelloop" / "cache" / "s3" / bucket / "team" / "predictions" / NAME / "_wal"
    assert wal.is_dir(), "the write-ahead log stays on local disk"

    labels = rows_between(frame, 30, 35)[["row_id", "label"]]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    ingested = cli_json("labels", "ingest", str(tmp_path / "labels.csv"), cwd=tmp_path)
    assert ingested["stored"] == len(labels)
    assert server.keys(bucket, f"team/labels/{NAME}/")

    # Another machine: nothing cached, everything read back from the bucket.
    shutil.rmtree(tmp_path / ".modelloop" / "cache")
    monitored = cli_json("monitor", "--as-of", day(36).isoformat(), cwd=tmp_path)
    assert monitored["n_rows"] == len(rows_between(frame, 30, 35))
    assert 0 < monitored["n_labelled"] <= len(labels)  # labels read back from the bucket
    stem = f"monitor-{day(36):%Y%m%dT%H%M%S}"
    assert monitored["report_url"] == f"s3://{bucket}/team/reports/{NAME}/{stem}.html"
    assert server.keys(bucket, f"team/reports/{NAME}/") == [
        f"team/reports/{NAME}/{stem}.html", f"team/reports/{NAME}/{stem}.json"
    ]
    assert Path(monitored["report_html"]).is_file(), "the local copy stays"

    status = cli_json("status", cwd=tmp_path)
    assert status["backends"]["logs"]["kind"] == "s3"
    assert status["backends"]["artifacts"]["location"] == f"s3://{bucket}/team/mlartifacts"

    doctor = cli_json("doctor", cwd=tmp_path)
    assert doctor["ok"], doctor
    checks = {check["name"]: check for check in doctor["checks"]}
    for name in ("artifact store", "prediction log storage"):
        assert checks[name]["ok"] and checks[name]["kind"] == "s3", checks[name]


def test_doctor_names_a_bucket_that_does_not_exist(
    tmp_path: Path, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_frame(days=10).to_parquet(tmp_path / "data.parquet", index=False)
    write_project(tmp_path)
    monkeypatch.setenv("MODELLOOP_STORAGE", "s3://no-such-bucket-here/team")
    done = run_cli("doctor", "--json", cwd=tmp_path, check=False, timeout=120)
    assert done.returncode == 1, done.stderr
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    for name in ("artifact store", "prediction log storage"):
        check = checks[name]
        assert not check["ok"] and check["problem"] == "not found", check
        assert "bucket 'no-such-bucket-here' not found" in check["detail"], check
        assert check["location"].startswith("s3://no-such-bucket-here/team"), check
    assert "Traceback" not in done.stderr


def test_a_command_that_needs_a_missing_bucket_says_so(
    tmp_path: Path, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_frame(days=10).to_parquet(tmp_path / "data.parquet", index=False)
    write_project(tmp_path)
    monkeypatch.setenv("MODELLOOP_STORAGE", "s3://no-such-bucket-here/team")
    (tmp_path / "labels.csv").write_text("row_id,label\n1,1\n", encoding="utf-8")
    done = run_cli("labels", "ingest", str(tmp_path / "labels.csv"), cwd=tmp_path, check=False)
    assert done.returncode == 1, done.stderr
    assert "s3://no-such-bucket-here/team" in done.stderr and "not found" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
