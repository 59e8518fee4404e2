"""The training pipeline: load the window, validate, split by time, fit, evaluate, track, register."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from modelloop.config import ProjectConfig
from modelloop.data import (
    Contract,
    DataSource,
    TrainingWindows,
    contract_report,
    drop_unlabelled,
    fingerprint,
    model_input,
    split_by_time,
    summarize,
    training_windows,
)
from modelloop.data.windows import MIN_TRAIN_ROWS
from modelloop.errors import DataError
from modelloop.registry import (
    STATUS_TAG,
    TRIGGER_TAG,
    ModelVersion,
    Registry,
    TrainingRecord,
    VersionStatus,
)
from modelloop.stats import build_profile, data_quality, score
from modelloop.stats.variability import reference_variability
from modelloop.timeutil import format_duration
from modelloop.training.estimator import build_pipeline


@dataclass
class TrainingResult:
    version: ModelVersion
    windows: TrainingWindows
    metric: str
    score: float | None
    rows: dict[str, int]
    contract: Contract
    quality: dict[str, Any] = field(default_factory=dict)
    #: The reference profile registered with the version (`profile.json`), for a local cache.
    profile: dict[str, Any] = field(default_factory=dict)


def git_sha(directory: Path) -> str | None:
    """The code version, when the project lives in a git work tree."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def load_labelled_window(
    config: ProjectConfig, source: DataSource, windows: TrainingWindows, contract: Contract
) -> tuple[pd.DataFrame, int]:
    """(rows, unlabelled): the rows whose labels existed at the as-of time, validated against
    the contract, and how many rows of the window were skipped because their target is empty
    (a label that has not arrived is normal, not an error)."""
    frame = source.load(windows.train_start, windows.labelled_until)
    frame, unlabelled = drop_unlabelled(frame, config.data.target)
    validated, problems = contract.check(frame, serving=False, name_rows_by_id=True)
    if problems:
        raise DataError(
            f"the training data for ({windows.train_start:%Y-%m-%d %H:%M}, "
            f"{windows.labelled_until:%Y-%m-%d %H:%M}] breaks the data contract; nothing was registered:\n"
            + "\n".join(f"  {line}" for line in summarize(problems)),
            report={**contract_report(problems, origin=config.data.source), "window": windows.to_dict()},
        )
    return validated, unlabelled


def train(
    config: ProjectConfig,
    *,
    source: DataSource,
    registry: Registry,
    contract: Contract | None,
    as_of: datetime,
    trigger: str,
    project_dir: Path,
    reference_profile: dict[str, Any] | None = None,
    extra_tags: Mapping[str, str] | None = None,
    windows: TrainingWindows | None = None,
) -> TrainingResult:
    """Fit a candidate at `as_of` and register it; raises DataError (registering nothing) on bad
    data. `extra_tags` go on the run and the version (the ledger's run id, say); `windows`
    replaces the ones `as_of` implies (a refit: training window plus holdout, no holdout)."""
    data = config.data
    windows = windows or training_windows(
        as_of,
        label_delay=config.monitoring.label_delay,
        window=config.training.window,
        holdout=config.evaluation.holdout,
    )
    if contract is None:
        first = source.load(windows.train_start, windows.labelled_until)
        contract = Contract.infer(first, data, config.task)
    frame, unlabelled = load_labelled_window(config, source, windows, contract)
    train_rows, holdout_rows = split_by_time(frame, data.timestamp, windows)
    if len(train_rows) < MIN_TRAIN_ROWS:
        skipped = f"; {unlabelled:,} rows of the window have no target yet" if unlabelled else ""
        raise DataError(
            f"only {len(train_rows)} labelled rows in the training window "
            f"({windows.train_start:%Y-%m-%d %H:%M}, {windows.train_end:%Y-%m-%d %H:%M}] at as-of "
            f"{as_of:%Y-%m-%d %H:%M} (label delay {format_duration(config.monitoring.label_delay)})"
            f"{skipped}; pass a later --as-of or a longer training.window"
        )
    if config.task == "classification" and train_rows[data.target].nunique() < 2:
        raise DataError(
            f"column {data.target!r} has one class only in the training window; a classifier needs both"
        )
    numeric, categorical = data.features.numeric, data.features.categorical
    x_train = model_input(train_rows, numeric, categorical)
    pipeline = build_pipeline(config.model.estimator, config.model.params, numeric, categorical, config.task)
    pipeline.fit(x_train, train_rows[data.target])

    holdout_score: float | None = None
    if len(holdout_rows):
        x_holdout = model_input(holdout_rows, numeric, categorical)
        predictions = (
            pipeline.predict_proba(x_holdout)[:, 1]
            if config.task == "classification"
            else pipeline.predict(x_holdout)
        )
        holdout_score = score(config.evaluation.metric, holdout_rows[data.target], predictions)

    profile = build_profile(train_rows, numeric, categorical)
    if len(holdout_rows):
        # The model's own output on rows it did not fit: the reference for prediction drift.
        profile["prediction"] = build_profile(
            pd.DataFrame({"prediction": predictions}), ["prediction"], []
        )["features"]["prediction"]
    # How much each feature drifts between windows of the training data itself: the
    # reference's own variability, read by `monitoring.thresholds: adaptive` and the volume check.
    window = config.monitoring.window
    chunk = window.fixed + timedelta(days=30.4375 * window.months)
    profile["variability"] = reference_variability(profile, train_rows, timestamp=data.timestamp, chunk=chunk)
    quality = data_quality(reference_profile, frame) if reference_profile else {}
    flagged = sorted({*quality.get("out_of_range", {}), *quality.get("unseen_categories", {})})
    sha = git_sha(project_dir)
    tags = {
        "modelloop.window.train_start": windows.train_start.isoformat(),
        "modelloop.window.train_end": windows.train_end.isoformat(),
        "modelloop.window.holdout_start": windows.holdout_start.isoformat(),
        "modelloop.window.holdout_end": windows.holdout_end.isoformat(),
        "modelloop.as_of": as_of.isoformat(),
        "modelloop.data_fingerprint": fingerprint(frame),
        "modelloop.code_version": sha or "unknown",
        "modelloop.estimator": config.model.estimator,
        TRIGGER_TAG: trigger[:4900],
        **(extra_tags or {}),
    }
    metrics: dict[str, float] = {
        "rows_train": float(len(train_rows)),
        "rows_holdout": float(len(holdout_rows)),
        "rows_unlabelled": float(unlabelled),
    }
    if holdout_score is not None:
        metrics[f"holdout_{config.evaluation.metric}"] = holdout_score
    if config.task == "classification":
        metrics["positive_share_train"] = float(train_rows[data.target].mean())
    metrics["quality_flagged_features"] = float(len(flagged))
    record = TrainingRecord(
        name=config.name,
        pipeline=pipeline,
        task=config.task,
        numeric=numeric,
        categorical=categorical,
        example=train_rows.head(5),
        run_name=f"train@{as_of:%Y-%m-%dT%H:%M}",
        params={
            **config.model.params,
            "estimator": config.model.estimator,
            "training_window": format_duration(config.training.window),
            "holdout": format_duration(config.evaluation.holdout),
            "label_delay": format_duration(config.monitoring.label_delay),
            "features_numeric": ",".join(numeric),
            "features_categorical": ",".join(categorical),
        },
        metrics=metrics,
        run_tags={
            **tags,
            "modelloop.project": config.name,
            **({"mlflow.source.git.commit": sha} if sha else {}),
        },
        version_tags={
            **tags,
            STATUS_TAG: VersionStatus.CANDIDATE,
            **({"modelloop.quality.flagged": ",".join(flagged)[:4900]} if flagged else {}),
        },
        json_artifacts={
            "contract.json": contract.to_dict(),
            "profile.json": profile,
            "data_quality.json": quality,
            "windows.json": windows.to_dict(),
        },
    )
    version = registry.register(record)
    registry.set_alias(config.name, "challenger", version.version)
    return TrainingResult(
        version=version,
        windows=windows,
        metric=config.evaluation.metric,
        score=holdout_score,
        rows={"train": len(train_rows), "holdout": len(holdout_rows), "unlabelled": unlabelled},
        quality=quality,
        contract=contract,
        profile=profile,
    )
