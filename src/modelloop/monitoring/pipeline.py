"""The monitoring pipeline: a window of the prediction log against the reference profiles of the
versions that served it, plus the primary metric on the rows whose labels have arrived.

The window is measured where the log lives (`modelloop.monitoring.window`): the rows, labelled
or not, stay in DuckDB, and only aggregates come back. Nothing here imports MLflow
or scikit-learn: the reference profiles come from the caller (`profiles`), e.g. a local cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelloop.config import ProjectConfig
from modelloop.monitoring.breaches import Breach, BreachKind
from modelloop.monitoring.drift import DriftResult, drift_from_counts, merge_drift
from modelloop.monitoring.report import render_html
from modelloop.monitoring.window import WindowStats, measure_window
from modelloop.stats import quality_from_counts
from modelloop.stats.metrics import score_from_row
from modelloop.timeutil import format_duration

if TYPE_CHECKING:
    from modelloop.registry import Registry
    from modelloop.store import LogStore

#: A model version's reference profile (`profile.json`), by version number.
ProfileSource = Callable[[int], Mapping[str, Any]]


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
    breaches: list[Breach] = field(default_factory=list)
    #: Why `metric_value` is None, in words a user can act on.
    metric_note: str | None = None
    #: Features whose drift is shown but not counted toward an alert (`monitoring.seasonal`).
    seasonal: list[str] = field(default_factory=list)
    report_json: Path | None = None
    report_html: Path | None = None

    @property
    def alert(self) -> bool:
        return bool(self.breaches)

    @property
    def breach_kinds(self) -> list[BreachKind]:
        return [breach.kind for breach in self.breaches]

    def breach(self, kind: BreachKind) -> Breach | None:
        return next((b for b in self.breaches if b.kind is kind), None)

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
            "breaches": [breach.message for breach in self.breaches],
            "breach_kinds": [str(kind) for kind in self.breach_kinds],
            "alert": self.alert,
            "report_json": str(self.report_json) if self.report_json else None,
            "report_html": str(self.report_html) if self.report_html else None,
        }


def run_monitoring(
    config: ProjectConfig,
    *,
    logs: LogStore,
    registry: Registry | None = None,
    as_of: datetime,
    reports_dir: Path,
    profiles: ProfileSource | None = None,
) -> MonitoringResult:
    """Drift, data quality and the primary metric of the window `(as_of - window, as_of]`.

    Args:
        profiles: The reference profile of a version. Default: `profile.json` read from the
            registry each run (through MLflow: seconds); pass a local cache instead.
    """
    mon, data = config.monitoring, config.data
    start = as_of - mon.window
    reference = _once(_profile_source(config, registry, profiles))
    stats = logs.query(
        start,
        as_of,
        lambda views: measure_window(
            views,
            profiles=reference,
            id_column=data.id_column,
            timestamp=data.timestamp,
            target=data.target,
            # Labels of rows newer than this could not have arrived by as-of, so re-monitoring
            # a past window after the fact gives the verdict it gave then.
            labelled_until=as_of - mon.label_delay,
            metric=config.evaluation.metric,
        ),
    )
    metric = config.evaluation.metric
    result = MonitoringResult(
        as_of=as_of,
        window_start=start,
        n_rows=stats.n_rows,
        n_labelled=0,
        metric=metric,
        metric_value=None,
        drift=None,
        quality={},
        versions={},
        seasonal=list(mon.seasonal),
    )
    if stats.n_rows == 0:
        result.metric_note = "no predictions in the window"
        return _write(result, config, reports_dir)

    parts: list[DriftResult] = []
    for served in stats.versions:
        parts.append(
            drift_from_counts(served.profile, served.counts, served.rows, threshold=mon.drift_threshold)
        )
        result.versions[str(served.version)] = served.rows
    result.drift = merge_drift(parts, threshold=mon.drift_threshold)
    if stats.latest_profile is not None:
        result.quality = quality_from_counts(stats.latest_profile, stats.quality, stats.n_rows)

    _performance(result, stats, config)
    counted = [f for f in result.drift.features if f.feature not in mon.seasonal]
    drifted = [f for f in counted if f.drifted]
    share = len(drifted) / len(counted) if counted else 0.0
    if counted and share > mon.drift_share:
        top = ", ".join(f"{f.feature} (PSI {f.psi:.2f})" for f in drifted)
        seasonal = f"; seasonal features not counted: {', '.join(mon.seasonal)}" if mon.seasonal else ""
        message = (
            f"drift: {len(drifted)} of {len(counted)} "
            f"features drifted ({share:.0%} > {mon.drift_share:.0%}): {top}{seasonal}"
        )
        result.breaches.append(Breach(BreachKind.DRIFT, message))
    return _write(result, config, reports_dir)


def _performance(result: MonitoringResult, stats: WindowStats, config: ProjectConfig) -> None:
    """The primary metric on the labelled rows, or the reason there is none; a breach of the
    performance floor."""
    mon, metric = config.monitoring, config.evaluation.metric
    labelled = stats.labelled
    result.n_labelled = labelled
    if labelled >= mon.min_labelled_rows:
        result.metric_value = score_from_row(metric, stats.metric_row)
        if result.metric_value is None:
            result.metric_note = f"{metric} is undefined on these labels (one class only)"
    elif labelled == 0 and stats.arrived:
        result.metric_note = (
            f"the {stats.arrived:,} labels stored for this window are for rows newer than as-of minus "
            f"monitoring.label_delay ({format_duration(mon.label_delay)}), so they are not "
            "counted yet: monitor at a later --as-of to count them"
        )
    elif labelled == 0:
        result.metric_note = "no labels have arrived for this window yet"
    else:
        result.metric_note = (
            f"{labelled:,} labelled rows, fewer than monitoring.min_labelled_rows "
            f"({mon.min_labelled_rows:,})"
        )

    floor = mon.performance_floor
    if floor is not None and result.metric_value is not None:
        worse = result.metric_value < floor if config.maximize else result.metric_value > floor
        if worse:
            message = (
                f"performance: {metric} {result.metric_value:.4f} on {labelled} "
                f"labelled rows is {'below the floor' if config.maximize else 'above the ceiling'} "
                f"{floor:.4f}"
            )
            result.breaches.append(Breach(BreachKind.PERFORMANCE, message))


def _profile_source(
    config: ProjectConfig, registry: Registry | None, profiles: ProfileSource | None
) -> ProfileSource:
    if profiles is not None:
        return profiles
    if registry is None:
        raise TypeError("run_monitoring needs `profiles` or a `registry` to read them from")
    found = registry

    def from_registry(version: int) -> Mapping[str, Any]:
        profile: Mapping[str, Any] = found.read_json(config.name, version, "profile.json")
        return profile

    return from_registry


def _once(source: ProfileSource) -> ProfileSource:
    """Each version's profile fetched at most once per run (a query may be read again)."""
    fetched: dict[int, Mapping[str, Any]] = {}

    def cached(version: int) -> Mapping[str, Any]:
        if version not in fetched:
            fetched[version] = source(version)
        return fetched[version]

    return cached


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
