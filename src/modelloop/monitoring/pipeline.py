"""The monitoring pipeline: a window of the prediction log against the reference profiles of the
versions that served it, plus the primary metric on the rows whose labels have arrived."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from modelloop.config import ProjectConfig
from modelloop.monitoring.drift import DriftResult, compute_drift, data_quality, merge_drift
from modelloop.monitoring.report import render_html
from modelloop.registry import Registry
from modelloop.store import LogStore
from modelloop.timeutil import format_duration
from modelloop.training.metrics import score


@dataclass
class MonitoringResult:
    as_of: datetime
    window_start: datetime
    n_rows: int
    n_labelled: int
    metric: str
    metric_value: float | None
    drift: DriftResult | None
    quality: dict[str, Any]
    versions: dict[str, int]
    breaches: list[str] = field(default_factory=list)
    breach_kinds: list[str] = field(default_factory=list)
    #: Why `metric_value` is None, in words a user can act on.
    metric_note: str | None = None
    #: Features whose drift is shown but not counted toward an alert (`monitoring.seasonal`).
    seasonal: list[str] = field(default_factory=list)
    report_json: Path | None = None
    report_html: Path | None = None

    @property
    def alert(self) -> bool:
        return bool(self.breaches)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "window": {"start": self.window_start.isoformat(), "end": self.as_of.isoformat()},
            "n_rows": self.n_rows,
            "n_labelled": self.n_labelled,
            "metric": {"name": self.metric, "value": self.metric_value, "note": self.metric_note},
            "drift": self.drift.to_dict() if self.drift else None,
            "seasonal": self.seasonal,
            "quality": self.quality,
            "versions": self.versions,
            "breaches": self.breaches,
            "breach_kinds": self.breach_kinds,
            "alert": self.alert,
            "report_json": str(self.report_json) if self.report_json else None,
            "report_html": str(self.report_html) if self.report_html else None,
        }


def labelled(
    predictions: pd.DataFrame, labels: pd.DataFrame, id_column: str, target: str
) -> pd.DataFrame:
    """Predictions joined with the labels that have arrived (ids compared as strings). A label
    sent again for the same id replaces the earlier one: the newest is the truth."""
    if predictions.empty or labels.empty:
        return predictions.iloc[0:0].assign(**{target: pd.Series(dtype="float64")})
    left = predictions.assign(_key=predictions[id_column].astype(str))
    right = (
        labels[[id_column, target]]
        .assign(_key=labels[id_column].astype(str))
        .drop(columns=[id_column])
        .drop_duplicates("_key", keep="last")
    )
    return left.merge(right, on="_key", how="inner").drop(columns=["_key"])


def run_monitoring(
    config: ProjectConfig, *, logs: LogStore, registry: Registry, as_of: datetime, reports_dir: Path
) -> MonitoringResult:
    mon, data = config.monitoring, config.data
    start = as_of - mon.window
    predictions = logs.read_predictions(start, as_of)
    metric = config.evaluation.metric
    result = MonitoringResult(
        as_of=as_of,
        window_start=start,
        n_rows=len(predictions),
        n_labelled=0,
        metric=metric,
        metric_value=None,
        drift=None,
        quality={},
        versions={},
        seasonal=list(mon.seasonal),
    )
    if predictions.empty:
        result.metric_note = "no predictions in the window"
        return _write(result, config, reports_dir)

    parts: list[DriftResult] = []
    profiles: dict[int, dict[str, Any]] = {}
    for key, rows in predictions.groupby("_model_version", sort=True):
        version = int(str(key))
        profile = registry.read_json(config.name, version, "profile.json")
        profiles[version] = profile
        parts.append(compute_drift(profile, rows, threshold=mon.drift_threshold))
        result.versions[str(version)] = len(rows)
    result.drift = merge_drift(parts, threshold=mon.drift_threshold)
    result.quality = data_quality(profiles[max(profiles)], predictions)

    joined = labelled(predictions, logs.read_labels(), data.id_column, data.target)
    # Labels that could not have arrived by as-of (timestamp > as_of - label delay) are left out,
    # so re-monitoring a past window after the fact gives the verdict it gave then.
    arrived = len(joined)
    joined = joined[joined[data.timestamp] <= pd.Timestamp(as_of - mon.label_delay)]
    result.n_labelled = len(joined)
    if len(joined) >= mon.min_labelled_rows:
        result.metric_value = score(metric, joined[data.target], joined["_prediction"])
        if result.metric_value is None:
            result.metric_note = f"{metric} is undefined on these labels (one class only)"
    elif joined.empty and arrived:
        result.metric_note = (
            f"the {arrived:,} labels stored for this window are for rows newer than as-of minus "
            f"monitoring.label_delay ({format_duration(mon.label_delay)}), so they are not "
            "counted yet: monitor at a later --as-of to count them"
        )
    elif joined.empty:
        result.metric_note = "no labels have arrived for this window yet"
    else:
        result.metric_note = (
            f"{len(joined):,} labelled rows, fewer than monitoring.min_labelled_rows "
            f"({mon.min_labelled_rows:,})"
        )

    floor = mon.performance_floor
    if floor is not None and result.metric_value is not None:
        worse = result.metric_value < floor if config.maximize else result.metric_value > floor
        if worse:
            result.breaches.append(
                f"performance: {metric} {result.metric_value:.4f} on {len(joined)} "
                f"labelled rows is {'below the floor' if config.maximize else 'above the ceiling'} "
                f"{floor:.4f}"
            )
            result.breach_kinds.append("performance")
    counted = [f for f in result.drift.features if f.feature not in mon.seasonal]
    drifted = [f for f in counted if f.drifted]
    share = len(drifted) / len(counted) if counted else 0.0
    if counted and share > mon.drift_share:
        top = ", ".join(f"{f.feature} (PSI {f.psi:.2f})" for f in drifted)
        seasonal = f"; seasonal features not counted: {', '.join(mon.seasonal)}" if mon.seasonal else ""
        result.breaches.append(
            f"drift: {len(drifted)} of {len(counted)} "
            f"features drifted ({share:.0%} > {mon.drift_share:.0%}): {top}{seasonal}"
        )
        result.breach_kinds.append("drift")
    return _write(result, config, reports_dir)


def _write(result: MonitoringResult, config: ProjectConfig, reports_dir: Path) -> MonitoringResult:
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"monitor-{result.as_of:%Y%m%dT%H%M%S}"
    result.report_json = reports_dir / f"{stem}.json"
    result.report_html = reports_dir / f"{stem}.html"
    payload = {"model": config.name, **result.to_dict()}
    payload["metric"]["floor"] = config.monitoring.performance_floor
    payload["metric"]["direction"] = config.evaluation.direction
    _atomic_write(result.report_json, json.dumps(payload, indent=2, default=str))
    _atomic_write(result.report_html, render_html(payload))
    return result


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
