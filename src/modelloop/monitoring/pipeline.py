"""The monitoring pipeline: a window of the prediction log against the reference profiles of the
versions that served it, plus the primary metric on the rows whose labels have arrived.

The window is measured where the log lives (`modelloop.monitoring.window`): the rows, labelled
or not, stay in DuckDB (or Spark, `monitoring.engine: spark`), and only aggregates come back.
Nothing here imports MLflow
or scikit-learn: the reference profiles come from the caller (`profiles`), e.g. a local cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelloop.config import ProjectConfig
from modelloop.files import write_atomically
from modelloop.monitoring.breaches import Breach, BreachKind
from modelloop.monitoring.drift import METHOD_NAMES, DriftResult, DriftRules, drift_from_counts, merge_drift
from modelloop.monitoring.window import WindowStats, count_period, measure_window, with_prediction
from modelloop.stats import quality_from_counts
from modelloop.stats.metrics import ESTIMABLE, TASK_METRICS
from modelloop.timeutil import Duration, format_duration

if TYPE_CHECKING:
    from modelloop.registry import Registry
    from modelloop.store import LogStore
    from modelloop.store.s3 import S3Location

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
    #: Every (kind, subject) this run had enough data to judge, breached or clean: an open
    #: alert of a pair judged clean here (at a later-or-equal as-of) resolves.
    judged: list[tuple[BreachKind, str]] = field(default_factory=list)
    #: More than `monitoring.drift_share` of the counted features drifted: the dataset-level
    #: condition that fires a retraining (`retraining.on_drift`); per-feature drift is an alert.
    drift_alarm: str | None = None
    #: Why `metric_value` is None, in words a user can act on.
    metric_note: str | None = None
    #: Features whose drift is shown but not counted toward an alert (`monitoring.seasonal`).
    seasonal: list[str] = field(default_factory=list)
    #: Every metric of the task on the labelled rows (when there are enough of them).
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: The primary metric estimated without labels (CBPE), with the other estimable ones.
    estimated: dict[str, Any] | None = None
    #: Label coverage: rows, rows old enough to be labelled, labelled rows, their share.
    coverage: dict[str, Any] = field(default_factory=dict)
    #: Per segment value (`monitoring.segments`): rows, labelled rows, metrics, breach.
    segments: list[dict[str, Any]] = field(default_factory=list)
    #: What drift compared with (`monitoring.reference`), and why, when it fell back.
    reference: dict[str, Any] = field(default_factory=lambda: {"kind": "training", "start": None,
                                                               "end": None, "note": None})
    report_json: Path | None = None
    report_html: Path | None = None
    #: The HTML report's copy on object storage (`MODELLOOP_STORAGE=s3://...`), if any.
    report_url: str | None = None

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
            "metric": {"name": self.metric, "value": self.metric_value, "note": self.metric_note,
                       "estimated": self.estimated},
            "metrics": self.metrics,
            "coverage": self.coverage,
            "segments": self.segments,
            "reference": self.reference,
            "drift": self.drift.to_dict() if self.drift else None,
            "drift_alarm": self.drift_alarm,
            "seasonal": self.seasonal,
            "quality": self.quality,
            "versions": self.versions,
            "breaches": [breach.to_dict() for breach in self.breaches],
            "breach_kinds": [str(kind) for kind in self.breach_kinds],
            "judged": [[str(kind), subject] for kind, subject in self.judged],
            "alert": self.alert,
            "report_json": str(self.report_json) if self.report_json else None,
            "report_html": str(self.report_html) if self.report_html else None,
            "report_url": self.report_url,
        }


def run_monitoring(
    config: ProjectConfig,
    *,
    logs: LogStore,
    registry: Registry | None = None,
    as_of: datetime,
    reports_dir: Path,
    profiles: ProfileSource | None = None,
    not_nullable: Sequence[str] = (),
    write: bool = True,
) -> MonitoringResult:
    """Drift, data quality and performance of the window `(as_of - window, as_of]`.

    Args:
        profiles: The reference profile of a version. Default: `profile.json` read from the
            registry each run (through MLflow: seconds); pass a local cache instead.
        not_nullable: Features the data contract forbids to be missing (a contract violation).
        write: Write the report now; False when the caller adds what the run led to
            (alerts, a retraining, the gate's decision) and writes it with `write_report`.
    """
    mon, data = config.monitoring, config.data
    start = as_of - mon.window
    reference = _once(_profile_source(config, registry, profiles))
    classifier = config.task == "classification"
    metric = config.evaluation.metric
    spark = _spark(config)
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
            metric=metric,
            metrics=TASK_METRICS[config.task],
            estimable=sorted(ESTIMABLE) if classifier else (),
            segments=mon.segments,
            max_segments=mon.max_segments,
            min_labelled=mon.min_labelled_rows,
        ),
        spark=spark,
    )
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
        return write_report(result, config, reports_dir) if write else _report_paths(result, reports_dir)

    rules = DriftRules(mon.drift_threshold, mon)
    references = _log_references(config, logs, stats, result, rules, start, as_of, spark)
    if references is not None and stats.latest_profile is not None:
        # A reference from the log is counted in the newest version's bins: one comparison.
        result.drift = drift_from_counts(
            with_prediction(stats.latest_profile), stats.quality, stats.n_rows,
            threshold=mon.drift_threshold, rules=rules, references=references,
        )
    else:
        parts = [
            drift_from_counts(with_prediction(served.profile), served.counts, served.rows,
                              threshold=mon.drift_threshold, rules=rules)
            for served in stats.versions
        ]
        result.drift = merge_drift(parts, threshold=mon.drift_threshold)
    for served in stats.versions:
        result.versions[str(served.version)] = served.rows
    _drift_breaches(result, config)
    if stats.latest_profile is not None:
        _quality(result, stats, config, not_nullable)
    _performance(result, stats, config)
    return write_report(result, config, reports_dir) if write else _report_paths(result, reports_dir)


def _log_references(
    config: ProjectConfig,
    logs: LogStore,
    stats: WindowStats,
    result: MonitoringResult,
    rules: DriftRules,
    start: datetime,
    as_of: datetime,
    spark: Any,
) -> dict[str, tuple[str, Any]] | None:
    """The log's rows of the same period last year, or of the window before this one, counted
    in the newest version's bins, for the features that compare with them; None when every
    feature compares with the training profile, or the log holds too few such rows."""
    mon = config.monitoring
    profile = stats.latest_profile
    if profile is None:
        return None
    names = [str(n) for n in profile.get("features", {}) if not rules.ignored(str(n))]
    wanted = {name: rules.reference(name) for name in names}
    kinds = sorted({kind for kind in wanted.values() if kind != "training"})
    if not kinds:
        result.reference = {"kind": "training", "start": None, "end": None, "note": None}
        return None
    found: dict[str, tuple[str, Any]] = {}
    notes: list[str] = []
    periods: dict[str, tuple[datetime, datetime]] = {}
    counted = with_prediction(profile)
    for kind in kinds:
        if kind == "same_period_last_year":
            period = (start - _YEAR, as_of - _YEAR)
        else:
            four = Duration(months=mon.window.months * 4, fixed=mon.window.fixed * 4)
            length = mon.reference_window or four
            period = (start - length, start)
        rows, counts = logs.query(
            period[0], period[1], lambda views: count_period(views, counted), spark=spark
        )
        shown = f"{kind.replace('_', ' ')} ({period[0]:%Y-%m-%d} to {period[1]:%Y-%m-%d})"
        if rows < mon.min_reference_rows:
            notes.append(
                f"{shown}: {rows:,} logged rows, fewer than monitoring.min_reference_rows "
                f"({mon.min_reference_rows:,}), so the training profile is the reference"
            )
            continue
        periods[kind] = period
        for name, feature_kind in wanted.items():
            if feature_kind == kind and name in counts:
                found[name] = (kind, counts[name].shares())
    kind = kinds[0] if len(kinds) == 1 else "mixed"
    used = periods.get(kinds[0]) if len(kinds) == 1 else None
    result.reference = {
        "kind": kind if found else "training",
        "requested": kind,
        "start": used[0].isoformat() if used else None,
        "end": used[1].isoformat() if used else None,
        "note": "; ".join(notes) or None,
    }
    return found or None


def _spark(config: ProjectConfig) -> Any:
    """The Spark session that computes the statistics (`monitoring.engine: spark`), else None."""
    if config.monitoring.engine != "spark":
        return None
    from modelloop import spark

    return spark.session(config.monitoring.spark_master)


def _drift_breaches(result: MonitoringResult, config: ProjectConfig) -> None:
    """A breach per drifted feature (and the prediction); the dataset-level alarm that retrains
    when more than `drift_share` of the counted features drifted."""
    mon, drift = config.monitoring, result.drift
    if drift is None:
        return
    for item in [*drift.features, *([drift.prediction] if drift.prediction else [])]:
        if item.n == 0 or item.value is None:
            continue
        result.judged.append((BreachKind.DRIFT, item.feature))
        if item.drifted:
            relation = "<" if item.method == "chi2" else ">"
            what = "p-value" if item.method == "chi2" else ""
            message = (
                f"drift: {item.feature} {METHOD_NAMES[item.method]}{what and ' ' + what} "
                f"{item.value:.3g} {relation} {item.threshold:.3g} ({item.threshold_source} threshold"
                f"{'' if item.reference == 'training' else ', against ' + item.reference.replace('_', ' ')})"
            )
            result.breaches.append(Breach(BreachKind.DRIFT, message, subject=item.feature,
                                          detail={"method": item.method, "value": item.value,
                                                  "threshold": item.threshold}))
    counted, share = drift.counted, drift.share_drifted
    drifted = [f for f in counted if f.drifted]
    if counted and share > mon.drift_share:
        top = ", ".join(f"{f.feature} ({METHOD_NAMES[f.method]} {f.value:.2f})" for f in drifted)
        left_out = [f.feature for f in drift.features if not f.counted]
        seasonal = f"; not counted: {', '.join(left_out)}" if left_out else ""
        result.drift_alarm = (
            f"drift: {len(drifted)} of {len(counted)} "
            f"features drifted ({share:.0%} > {mon.drift_share:.0%}): {top}{seasonal}"
        )


def _quality(
    result: MonitoringResult, stats: WindowStats, config: ProjectConfig, not_nullable: Sequence[str]
) -> None:
    """Missing rates against the reference, values out of range, unseen categories, contract
    violations and the window's volume; a breach where one passes its limit."""
    limits = config.monitoring.quality
    profile = stats.latest_profile
    assert profile is not None
    # A feature the project file ignores is not measured at all: no drift, no quality alert.
    ignored = {name for name, rule in config.monitoring.features.items() if rule.ignore}
    features = {name: f for name, f in profile.get("features", {}).items() if name not in ignored}
    quality = quality_from_counts({**profile, "features": features}, stats.quality, stats.n_rows)
    missing: dict[str, Any] = {}
    for name, share in quality["missing"].items():
        reference = float(features[name].get("missing_share", 0.0))
        missing[name] = {"share": share, "reference_share": reference}
        result.judged.append((BreachKind.QUALITY, f"missing:{name}"))
        if share - reference > limits.missing_increase:
            result.breaches.append(Breach(
                BreachKind.QUALITY,
                f"quality: {name} is missing in {share:.1%} of rows, {reference:.1%} in training",
                subject=f"missing:{name}",
            ))
    quality["missing"] = missing
    for name in quality["missing"]:
        kind = features[name].get("kind")
        check = "out_of_range" if kind == "numeric" else "unseen"
        result.judged.append((BreachKind.QUALITY, f"{check}:{name}"))
    for name, found in quality["out_of_range"].items():
        if found["share"] > limits.out_of_range:
            result.breaches.append(Breach(
                BreachKind.QUALITY,
                f"quality: {found['share']:.1%} of {name} outside the training range "
                f"[{found['reference_min']:.4g}, {found['reference_max']:.4g}] "
                f"(seen {found['min_seen']:.4g} to {found['max_seen']:.4g})",
                subject=f"out_of_range:{name}",
            ))
    for name, found in quality["unseen_categories"].items():
        if found["share"] > limits.unseen:
            shown = ", ".join(map(str, found["values"][:3]))
            result.breaches.append(Breach(
                BreachKind.QUALITY,
                f"quality: {found['share']:.1%} of {name} are categories never seen in training ({shown})",
                subject=f"unseen:{name}",
            ))
    contract: dict[str, Any] = {}
    for name in not_nullable:
        counts = stats.quality.get(name) if name not in ignored else None
        if counts is None:
            continue
        result.judged.append((BreachKind.QUALITY, f"contract:{name}"))
        if counts.missing:
            share = counts.missing / stats.n_rows
            contract[name] = {"count": counts.missing, "share": share,
                              "rule": "not nullable (missing or not a value of its type)"}
            result.breaches.append(Breach(
                BreachKind.QUALITY,
                f"quality: {counts.missing:,} rows break the data contract: {name} is missing or "
                "not of its type, which the contract does not allow",
                subject=f"contract:{name}",
            ))
    quality["contract"] = contract
    if limits.volume:
        quality["volume"] = _volume(result, profile, config)
    result.quality = quality


def _volume(result: MonitoringResult, profile: Mapping[str, Any], config: ProjectConfig) -> dict[str, Any]:
    """The window's rows against the reference's rows per window of the same length."""
    rows = profile.get("variability", {}).get("rows") or {}
    seconds = rows.get("chunk_seconds")
    out: dict[str, Any] = {"rows": result.n_rows, "expected": None, "low": None, "high": None,
                           "anomaly": False, "note": None}
    if not seconds or rows.get("mean") is None:
        out["note"] = "the reference has no cadence to compare with (trained on too short a span)"
        return out
    window = (result.as_of - result.window_start).total_seconds()
    scale = window / float(seconds)
    expected = float(rows["mean"]) * scale
    spread = float(rows.get("std") or 0.0) * scale * config.monitoring.adaptive_k
    low, high = (max(0.0, expected - spread), expected + spread) if spread else (expected / 2, expected * 2)
    out.update(expected=expected, low=low, high=high)
    result.judged.append((BreachKind.VOLUME, ""))
    if not low <= result.n_rows <= high:
        out["anomaly"] = True
        result.breaches.append(Breach(
            BreachKind.VOLUME,
            f"volume: {result.n_rows:,} rows in the window, expected {low:,.0f} to {high:,.0f} "
            f"from the training data's cadence ({expected:,.0f} on average)",
            detail={"rows": result.n_rows, "expected": expected},
        ))
    return out


def _performance(result: MonitoringResult, stats: WindowStats, config: ProjectConfig) -> None:
    """The metrics on the labelled rows, or the reason there are none; label coverage; the
    estimate while labels are missing; per segment; a breach of the performance floor."""
    mon, metric = config.monitoring, config.evaluation.metric
    labelled = stats.labelled
    result.n_labelled = labelled
    result.coverage = {
        "rows": stats.n_rows,
        "eligible": stats.eligible,
        "labelled": labelled,
        "share": labelled / stats.eligible if stats.eligible else None,
    }
    enough = labelled >= mon.min_labelled_rows
    if enough:
        result.metric_value = stats.metrics.get(metric)
        result.metrics = dict(stats.metrics)
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
    estimate = stats.estimated.get(metric)
    if estimate is not None:
        result.estimated = {"value": estimate, "method": "CBPE", "rows": stats.n_rows,
                            "metrics": dict(stats.estimated)}

    floor = mon.performance_floor

    def worse(value: float) -> bool:
        return floor is not None and (value < floor if config.maximize else value > floor)

    bound = "below the floor" if config.maximize else "above the ceiling"
    if result.metric_value is not None:
        result.judged.append((BreachKind.PERFORMANCE, metric))
        if worse(result.metric_value):
            result.breaches.append(Breach(
                BreachKind.PERFORMANCE,
                f"performance: {metric} {result.metric_value:.4f} on {labelled:,} labelled rows is "
                f"{bound} {floor:.4f}",
                subject=metric, detail={"value": result.metric_value, "floor": floor},
            ))
    elif estimate is not None and floor is not None:
        subject = f"estimated:{metric}"
        result.judged.append((BreachKind.PERFORMANCE, subject))
        if worse(estimate):
            result.breaches.append(Breach(
                BreachKind.PERFORMANCE,
                f"performance (estimated): {metric} estimated at {estimate:.4f} by CBPE from the "
                f"predicted probabilities of {stats.n_rows:,} rows, {bound} {floor:.4f}; "
                "labels will say",
                subject=subject, detail={"value": estimate, "floor": floor, "estimated": True},
            ))
    for segment in stats.segments:
        value = segment["metrics"].get(metric) if segment["labelled"] >= mon.min_labelled_rows else None
        breach = value is not None and worse(value)
        result.segments.append({**segment, "metric": value, "breach": breach})
        if value is None:
            continue
        subject = f"{metric}@{segment['column']}={segment['value']}"
        result.judged.append((BreachKind.PERFORMANCE, subject))
        if breach:
            result.breaches.append(Breach(
                BreachKind.PERFORMANCE,
                f"performance: {metric} {value:.4f} on {segment['labelled']:,} labelled rows of "
                f"{segment['column']} = {segment['value']} is {bound} {floor:.4f}",
                subject=subject, detail={"value": value, "floor": floor},
            ))


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


def write_report(
    result: MonitoringResult,
    config: ProjectConfig,
    reports_dir: Path,
    *,
    extra: Mapping[str, Any] | None = None,
    copy_to: S3Location | None = None,
) -> MonitoringResult:
    """Write the run's JSON and HTML reports; `extra` adds what the run led to (its alerts, the
    retraining it fired and the gate's decision, earlier runs for the charts). `copy_to`: object
    storage that gets a copy of both (the local files stay, for the dashboard)."""
    from modelloop.reports import render_monitoring

    reports_dir.mkdir(parents=True, exist_ok=True)
    _report_paths(result, reports_dir)
    assert result.report_json is not None and result.report_html is not None
    if copy_to is not None:
        result.report_url = copy_to.url_of(result.report_html.name)
    payload = {"model": config.name, **result.to_dict(), **(extra or {})}
    payload["metric"]["floor"] = config.monitoring.performance_floor
    payload["metric"]["direction"] = config.evaluation.direction
    text = json.dumps(payload, indent=2, default=str)
    write_atomically(result.report_json, text, what="monitoring report")
    write_atomically(result.report_html, render_monitoring(payload), what="monitoring report")
    if copy_to is not None:
        for path in (result.report_json, result.report_html):
            copy_to.put_file(path, path.name)
    return result


def _report_paths(result: MonitoringResult, reports_dir: Path) -> MonitoringResult:
    stem = f"monitor-{result.as_of:%Y%m%dT%H%M%S}"
    result.report_json = reports_dir / f"{stem}.json"
    result.report_html = reports_dir / f"{stem}.html"
    return result


_YEAR = Duration(months=12)
