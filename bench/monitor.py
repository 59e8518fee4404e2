"""`modelloop monitor` against Evidently's DataDriftPreset on the same week of the prediction log.

Run by hand (not a test), from the repository root:

    .venv/bin/python bench/monitor.py [--rows 1000000] [--rounds 2] [--keep DIR] [--engine spark]

It builds a finished demo (`modelloop demo`, about a minute; `--keep DIR` builds it in DIR once
and reuses it), copies it, and writes a week after the demo's last day into the copy's
prediction log in the documented layout (`predictions/<model>/date=YYYY-MM-DD/part-*.parquet`):
`--rows` flights drawn from the demo's own log (its features and the champion's predictions),
with temp +8, dewp +8 and pressure -6, logged as the champion. Half of them get their real label
through `modelloop labels ingest`. The copy judges drift with fixed thresholds, as Evidently's
preset does (the demo's own are adaptive). Then, alternating M E M E after one untimed run of each:

- M: the whole `modelloop monitor --no-retrain --as-of <end of the week>` command, a subprocess
  (interpreter start and imports included): drift of every feature against the champion's
  reference profile, data quality, and ROC AUC on the labelled rows.
- E: Evidently 0.7's DataDriftPreset, a subprocess in its own venv (Evidently 0.7 does not
  import with pandas 3; created under ~/.cache/modelloop-bench/evidently on first use), on the
  same Parquet files (the features only) against the champion's training rows.

Wall time and peak RSS of each process (measured by GNU time, /usr/bin/time). The last line:
`ratio <rows> <E/M>x (target >= 20), peak MB modelloop <m> (target <= 600) evidently <e>`, with
the best time of each side over the rounds and the largest peak. Targets (issue 10): >= 20x at
1M rows, >= 30x at 5M, modelloop's peak <= 600 MB at 1M and flat in rows; 10M completes.

`--engine spark` runs M with `monitoring.engine: spark` (local[*]; the peak then leaves out the
JVM's, which GNU time does not see as the command's own when Spark runs it as a child).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TARGETS = {1_000_000: 20.0, 5_000_000: 30.0}
PEAK_TARGET_MB = 600
WEEK = timedelta(days=7)
SHIFTS = {"temp": 8.0, "dewp": 8.0, "pressure": -6.0}
EVIDENTLY_VENV = Path.home() / ".cache" / "modelloop-bench" / "evidently"
DONE = ".bench-done"

EVIDENTLY_SCRIPT = r'''
import json, sys, time
from pathlib import Path

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

spec = json.loads(Path(sys.argv[1]).read_text())
columns = spec["numeric"] + spec["categorical"]
reference = pd.read_parquet(spec["reference"], columns=columns)
current = pd.concat([pd.read_parquet(f, columns=columns) for f in spec["current"]], ignore_index=True)
definition = DataDefinition(numerical_columns=spec["numeric"], categorical_columns=spec["categorical"])
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(current, data_definition=definition),
    Dataset.from_pandas(reference, data_definition=definition),
)
Path(spec["out"]).write_text(snapshot.json())
drifted = []
for metric in snapshot.dict()["metrics"]:
    config = metric.get("config", {})
    kind, threshold = config.get("type", ""), config.get("threshold", 0.1)
    if kind.endswith("ValueDrift") and float(metric["value"]) >= threshold:
        drifted.append(config["column"])
print(json.dumps({"rows": len(current), "drifted": sorted(drifted)}))
'''


def modelloop_command() -> list[str]:
    """The `modelloop` entry point beside this interpreter (the project's venv)."""
    script = Path(sys.executable).with_name("modelloop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "modelloop"]


def run(command: list[str], cwd: Path, what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def finished_demo(keep: Path) -> Path:
    """A finished `modelloop demo` under `keep`, built once."""
    demo = keep / "demo"
    if (demo / DONE).exists():
        print(f"reusing the finished demo in {demo}", flush=True)
        return demo
    if demo.exists():
        shutil.rmtree(demo)
    keep.mkdir(parents=True, exist_ok=True)
    print(f"running `modelloop demo --dir {demo}` (about a minute) ...", flush=True)
    started = time.perf_counter()
    run([*modelloop_command(), "demo", "--dir", str(demo)], keep, "modelloop demo")
    (demo / DONE).write_text(f"built in {time.perf_counter() - started:.0f} s\n")
    return demo


def project_facts(project_file: Path) -> dict[str, Any]:
    """What the week needs from the demo: names, the champion and its training window (read
    through MLflow here, in the untimed setup)."""
    import yaml

    from modelloop.project import open_project

    raw = yaml.safe_load(project_file.read_text())
    project = open_project(project_file)
    champion = project.champion()
    if champion is None:
        raise SystemExit(f"the demo in {project_file.parent} has no champion")
    return {
        "name": raw["name"],
        "id": raw["data"]["id"],
        "time": raw["data"]["timestamp"],
        "target": raw["data"]["target"],
        "numeric": list(raw["data"]["features"]["numeric"]),
        "categorical": list(raw["data"]["features"]["categorical"]),
        "champion": champion.version,
        "train_start": datetime.fromisoformat(champion.tags["modelloop.window.train_start"]),
        "train_end": datetime.fromisoformat(champion.tags["modelloop.window.train_end"]),
        "home": project.home,
    }


def write_week(work: Path, facts: dict[str, Any], rows: int) -> tuple[datetime, list[Path]]:
    """`rows` flights in the week after the log's last day, in the log's layout; half labelled."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    home = facts["home"]
    log = home / "predictions" / facts["name"]
    features = [*facts["numeric"], *facts["categorical"]]
    ident, stamp, target = facts["id"], facts["time"], facts["target"]
    connection = duckdb.connect()
    scan = f"read_parquet('{log}/date=*/*.parquet', union_by_name = true, hive_partitioning = false)"
    source = connection.execute(f"SELECT {', '.join(features)}, {ident}, _prediction FROM {scan}").df()
    truth = pd.read_parquet(work / "data" / "flights.parquet", columns=[ident, target])
    source = source.merge(truth, on=ident, how="inner").dropna(subset=[target])
    last = connection.execute(f"SELECT max({stamp}) FROM {scan}").fetchone()
    connection.close()
    start = pd.Timestamp(last[0] if last else "2014-01-01").normalize() + pd.Timedelta(days=1)
    end = start + pd.Timedelta(WEEK)
    rng = np.random.default_rng(0)
    per_day = -(-rows // 7)
    labels: list[Path] = []
    files: list[Path] = []
    next_id = 10**9
    for day in range(7):
        count = min(per_day, rows - day * per_day)
        if count <= 0:
            break
        take = source.iloc[rng.integers(0, len(source), count)].reset_index(drop=True)
        for name, shift in SHIFTS.items():
            take[name] = take[name] + shift
        take[ident] = np.arange(next_id, next_id + count, dtype="int64")
        next_id += count
        seconds = np.sort(rng.integers(1, 86_401, count))  # (midnight, next midnight]
        take[stamp] = (start + pd.Timedelta(days=day) + pd.to_timedelta(seconds, unit="s")).astype(
            "datetime64[us]"
        )
        take["_model_version"] = np.int64(facts["champion"])
        take["_request_id"] = [f"bench-{day}"] * count
        take["_served_at"] = pd.Timestamp("2026-01-01").as_unit("us")
        labelled = take.loc[rng.random(count) < 0.5, [ident, target]]
        frame = take.drop(columns=[target])
        # A row's partition is the date of its timestamp: a row at midnight belongs to that day.
        for date, part in frame.groupby(frame[stamp].dt.strftime("%Y-%m-%d"), sort=True):
            folder = log / f"date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"part-20260101T00000{day}000000Z-bench{len(files)}.parquet"
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), path, row_group_size=1 << 20)
            files.append(path)
        labels_file = work / f"labels-{day}.parquet"
        labelled.to_parquet(labels_file, index=False)
        labels.append(labels_file)
        del take, frame, labelled
    for path in labels:
        run([*modelloop_command(), "labels", "ingest", str(path)], work, "modelloop labels ingest")
    reference = work / "reference.parquet"
    flights = pd.read_parquet(work / "data" / "flights.parquet")
    window = (flights[stamp] > facts["train_start"]) & (flights[stamp] <= facts["train_end"])
    flights.loc[window, features].to_parquet(reference, index=False)
    (work / "bench-week.json").write_text(
        json.dumps({"end": end.isoformat(), "files": [str(f) for f in files]}, indent=1)
    )
    return end.to_pydatetime(), files


def week_copy(demo: Path, keep: Path, rows: int) -> tuple[Path, dict[str, Any], datetime, list[Path]]:
    work = keep / f"week-{rows}"
    marker = work / "bench-week.json"
    if not marker.exists():
        if work.exists():
            shutil.rmtree(work)
        print(f"copying the demo to {work} ...", flush=True)
        shutil.copytree(demo, work, ignore=shutil.ignore_patterns("reports", DONE))
    like_for_like(work / "modelloop.yaml")
    facts = project_facts(work / "modelloop.yaml")
    if marker.exists():
        written = json.loads(marker.read_text())
        print(f"reusing the week in {work}", flush=True)
        return work, facts, datetime.fromisoformat(written["end"]), [Path(f) for f in written["files"]]
    print(f"writing {rows:,} flights and labelling half of them ...", flush=True)
    end, files = write_week(work, facts, rows)
    return work, facts, end, files


def set_engine(project_file: Path, engine: str) -> None:
    """`monitoring.engine` in the copy's project file (the copy is reused across runs)."""
    lines = [
        line for line in project_file.read_text().splitlines() if not line.startswith("  engine: ")
    ]
    at = lines.index("monitoring:") + 1
    lines.insert(at, f"  engine: {engine}")
    project_file.write_text("\n".join(lines) + "\n")


def like_for_like(project_file: Path) -> None:
    """Judge every feature against a fixed threshold, as Evidently's preset does. The demo holds
    its weather to its own week-to-week swings (`thresholds: adaptive`), within which a shift of
    the whole year's rows by +8 is ordinary; the work is the same either way."""
    text = project_file.read_text()
    project_file.write_text(text.replace("  thresholds: adaptive ", "  thresholds: fixed    "))


def evidently_python() -> Path:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {EVIDENTLY_VENV} (Evidently 0.7, pandas < 3) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "evidently==0.7.*", "pandas<3", "pyarrow"], check=True
        )
    return python


def measured(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stdout of `command`.

    The peak comes from GNU time, a small process that forks and execs the command: Linux keeps
    the largest RSS a process had across exec, so a command forked straight from this (large)
    interpreter would be charged for this interpreter's pages.
    """
    timer = Path("/usr/bin/time")
    wrapped = [str(timer), "-f", "peak-kb %M", *command] if timer.exists() else command
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(wrapped, cwd=cwd, stdout=out, stderr=err, text=True)
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        shown = " ".join(command)
        raise SystemExit(f"{shown} failed ({process.returncode}):\n{stdout[-2000:]}\n{stderr[-3000:]}")
    peak_kb = float(usage.ru_maxrss)  # without GNU time: an upper bound (see above)
    for line in reversed(stderr.splitlines()):
        if line.startswith("peak-kb "):
            peak_kb = float(line.split()[1])
            break
    return seconds, peak_kb / 1024, stdout


def rows_label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows % 1000 == 0:
        return f"{rows // 1000}k"
    return str(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="flights in the week")
    parser.add_argument("--rounds", type=int, default=2, help="M E pairs, after one untimed run of each")
    parser.add_argument("--keep", type=Path, default=None, help="build (or reuse) the demo and the week here")
    parser.add_argument(
        "--no-evidently", action="store_true", help="time modelloop only (e.g. 10M rows: does it complete?)"
    )
    parser.add_argument(
        "--engine", choices=["local", "spark"], default="local", help="monitoring.engine of modelloop's side"
    )
    args = parser.parse_args()

    keep = args.keep or Path(tempfile.mkdtemp(prefix="modelloop-bench-monitor-"))
    keep = keep.resolve()
    demo = finished_demo(keep)
    work, facts, end, files = week_copy(demo, keep, args.rows)
    set_engine(work / "modelloop.yaml", args.engine)
    python = None if args.no_evidently else evidently_python()
    spec = work / "evidently-spec.json"
    script = work / "evidently_drift.py"
    script.write_text(EVIDENTLY_SCRIPT)
    spec.write_text(
        json.dumps(
            {
                "reference": str(work / "reference.parquet"),
                "current": [str(f) for f in files],
                "numeric": facts["numeric"],
                "categorical": facts["categorical"],
                "out": str(work / "evidently-report.json"),
            }
        )
    )
    as_of = end.isoformat()
    monitor = [*modelloop_command(), "monitor", "--no-retrain", "--as-of", as_of, "--json"]
    evidently = [str(python), str(script), str(spec)]
    sides = [("M", monitor)] if python is None else [("M", monitor), ("E", evidently)]

    others = "" if python is None else "; Evidently"
    print(f"warming up (untimed): modelloop monitor --no-retrain --as-of {as_of}{others}", flush=True)
    _, _, first = measured(monitor, work)
    found = json.loads(first)
    print(
        f"  modelloop: {found['n_rows']:,} rows, {found['n_labelled']:,} labelled, "
        f"{found['metric']['name']} {found['metric']['value']}, drifted {found['drift']['drifted']}"
    )
    if python is not None:
        _, _, second = measured(evidently, work)
        seen = json.loads(second.strip().splitlines()[-1])
        print(f"  Evidently: {seen['rows']:,} rows, drifted {seen['drifted']}")

    times: dict[str, list[float]] = {"M": [], "E": []}
    peaks: dict[str, list[float]] = {"M": [], "E": []}
    for round_no in range(1, args.rounds + 1):
        for side, command in sides:
            seconds, peak, _ = measured(command, work)
            times[side].append(seconds)
            peaks[side].append(peak)
            name = "modelloop monitor" if side == "M" else "Evidently DataDriftPreset"
            print(f"round {round_no} {side} {name:26s} {seconds:7.2f} s  peak {peak:6.0f} MB", flush=True)

    label = rows_label(args.rows)
    print(f"work folder: {work}")
    if python is None:
        print(
            f"rows {label} modelloop ({args.engine}) {min(times['M']):.2f} s, "
            f"peak MB modelloop {max(peaks['M']):.0f}"
        )
        return
    best_m, best_e = min(times["M"]), min(times["E"])
    ratio = best_e / best_m
    target = TARGETS.get(args.rows)
    wanted = f" (target >= {target:.0f})" if target else ""
    print(
        f"ratio {label} {ratio:.1f}x{wanted}, peak MB modelloop {max(peaks['M']):.0f} "
        f"(target <= {PEAK_TARGET_MB}) evidently {max(peaks['E']):.0f}"
    )


if __name__ == "__main__":
    main()
