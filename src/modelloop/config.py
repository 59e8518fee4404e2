"""The project file (`modelloop.yaml`): its schema, and errors that name the file and the field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from modelloop.errors import ConfigError
from modelloop.timeutil import (
    Duration,
    cron_trigger,
    format_duration,
    parse_duration,
    parse_wall_duration,
)

# Durations dump as the text a user would write ('45d', '6mo'), in JSON and Python mode alike:
# left to itself pydantic would dump a Duration as a dict of its dataclass fields.
_DURATION_TEXT = PlainSerializer(format_duration, return_type=str)
_DURATION_SCHEMA = WithJsonSchema({"type": "string", "examples": ["45d", "12h", "6mo", "1y"]})

#: A setting measured on the data's time (the project's timestamp column): months and years allowed.
DataDuration = Annotated[
    Duration, PlainValidator(parse_duration), _DURATION_TEXT, _DURATION_SCHEMA
]
#: A setting measured on the server's clock: fixed units only, so it stays a plain timedelta.
WallDuration = Annotated[
    timedelta, PlainValidator(parse_wall_duration), _DURATION_TEXT, _DURATION_SCHEMA
]

#: metric name -> (task, direction). The direction is the one that means "better".
METRICS: dict[str, tuple[str, str]] = {
    "roc_auc": ("classification", "maximize"),
    "average_precision": ("classification", "maximize"),
    "accuracy": ("classification", "maximize"),
    "f1": ("classification", "maximize"),
    "log_loss": ("classification", "minimize"),
    "brier": ("classification", "minimize"),
    "rmse": ("regression", "minimize"),
    "mae": ("regression", "minimize"),
    "r2": ("regression", "maximize"),
    "calibration_error": ("classification", "minimize"),
    "mape": ("regression", "minimize"),
}


#: Metrics whose values lie between 0 and 1 (r2 is at most 1), so a floor outside is a typo.
_UNIT_METRICS = ("roc_auc", "average_precision", "accuracy", "f1", "brier", "calibration_error")


def _longer_than_zero(value: Duration) -> Duration:
    if value.months == 0 and value.fixed <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Features(_Section):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_features(self) -> Features:
        if not self.numeric and not self.categorical:
            raise ValueError("list at least one numeric or categorical feature")
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f"{sorted(both)} listed as both numeric and categorical")
        return self

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


#: The id column's name when the project file names none: derived from each row's time and values.
DERIVED_ID = "row_id"

LabelValue = str | int | float | bool


class DataConfig(_Section):
    source: str = Field(description="Parquet/CSV path or glob, or 'module:function'")
    timestamp: str
    target: str
    id: str | None = Field(
        default=None,
        description="the row id column; without one, an id is derived from the row's time and "
        "feature values (see modelloop.data.row_id)",
    )
    positive: LabelValue | None = Field(
        default=None,
        description="classification: the target value that is the positive class, when it is "
        "not 1/true/yes",
    )
    negative: LabelValue | None = Field(
        default=None,
        description="classification: the other class; any other value is then refused",
    )
    features: Features

    @model_validator(mode="after")
    def _distinct_roles(self) -> DataConfig:
        special = {"timestamp": self.timestamp, "target": self.target, "id": self.id_column}
        for role, column in special.items():
            if column in self.features.all:
                raise ValueError(f"column {column!r} is the {role}; it cannot also be a feature")
        seen: dict[str, str] = {}
        for role, column in special.items():
            if column in seen:
                raise ValueError(
                    f"{_FIELD_MARK}data.{role}: column {column!r} is already the {seen[column]}; "
                    "each role needs its own column"
                )
            seen[column] = role
        if self.negative is not None and self.positive is None:
            raise ValueError(
                f"{_FIELD_MARK}data.negative: set data.positive too (the class that counts as 1)"
            )
        if self.positive is not None and _same_label(self.positive, self.negative):
            raise ValueError(f"{_FIELD_MARK}data.negative: must differ from data.positive")
        return self

    @property
    def id_column(self) -> str:
        """The id column: the one named, or the derived `row_id`."""
        return self.id or DERIVED_ID

    @property
    def derived_id(self) -> bool:
        return self.id is None


def _same_label(a: LabelValue | None, b: LabelValue | None) -> bool:
    return b is not None and str(a).strip().lower() == str(b).strip().lower()


class ModelConfig(_Section):
    estimator: str = Field(description="class path of a scikit-learn estimator")
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(_Section):
    window: DataDuration = Field(
        default=Duration(fixed=timedelta(days=60)), description="labelled history used to fit"
    )
    refit: bool = Field(
        default=False,
        description="once a candidate passes the gate (and is approved), serve a refit of it on "
        "its training window plus its holdout, so the champion is never the holdout stale",
    )

    _positive = field_validator("window")(_longer_than_zero)


class EvaluationConfig(_Section):
    metric: str = "roc_auc"
    direction: Literal["maximize", "minimize"] | None = None
    holdout: DataDuration = Duration(fixed=timedelta(days=14))

    _positive = field_validator("holdout")(_longer_than_zero)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"{metric!r} is not one of {', '.join(sorted(METRICS))}")
        return metric

    @model_validator(mode="after")
    def _default_direction(self) -> EvaluationConfig:
        if self.direction is None:
            self.direction = METRICS[self.metric][1]  # type: ignore[assignment]
        return self


class GateConfig(_Section):
    floor: float | None = Field(default=None, description="absolute score a candidate must reach")
    tolerance: float = Field(
        default=0.0, ge=0, description="how much worse than the champion is still fine"
    )
    max_latency_ms: float | None = Field(
        default=None, gt=0, description="the longest a candidate may take to answer one row"
    )
    relative_tolerance: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="how much worse than the champion is still fine, as a share of the champion's "
        "score (0.01: 1%); with tolerance too, the larger allowance applies",
    )
    approval: Literal["auto", "manual"] = Field(
        default="auto",
        description="manual: a candidate that passes waits as pending_approval until "
        "`modelloop approve` (or `reject`)",
    )
    replay: DataDuration | None = Field(
        default=None,
        description="also compare on this much of the latest logged traffic with labels, after "
        "the candidate's training window (e.g. 28d); unset: no replay",
    )
    replay_window: DataDuration | None = Field(
        default=None, description="the replay's windows (default: monitoring.window)"
    )
    max_lost_windows: int = Field(
        default=1, ge=0, description="replay windows the candidate may lose to the champion"
    )

    _positive = field_validator("replay", "replay_window")(
        lambda value: None if value is None else _longer_than_zero(value)
    )


DriftMethod = Literal["psi", "jensen_shannon", "wasserstein", "chi2"]
ReferenceKind = Literal["training", "same_period_last_year", "rolling"]


class FeatureMonitoring(_Section):
    """How one feature's drift is judged (`monitoring.features.<name>`)."""

    ignore: bool = Field(default=False, description="not measured, never an alert")
    method: DriftMethod | None = Field(
        default=None,
        description="psi (default), jensen_shannon, wasserstein (numeric) or chi2 (categorical; "
        "the threshold is a p-value)",
    )
    threshold: float | None = Field(default=None, gt=0, description="this feature's threshold")
    reference: ReferenceKind | None = Field(default=None, description="this feature's reference")
    counted: bool = Field(
        default=True, description="false: an alert of its own, but not counted toward drift_share"
    )


class QualityLimits(_Section):
    """When data quality on the traffic is an alert."""

    missing_increase: float = Field(
        default=0.1, gt=0, le=1, description="missing share above the reference's by more than this"
    )
    out_of_range: float = Field(
        default=0.05, gt=0, le=1, description="share of values outside the training range"
    )
    unseen: float = Field(default=0.05, gt=0, le=1, description="share of categories never seen in training")
    volume: bool = Field(default=True, description="rows per window against the reference's cadence")


class MonitoringConfig(_Section):
    window: DataDuration = Duration(fixed=timedelta(days=7))
    _positive = field_validator("window")(_longer_than_zero)
    label_delay: DataDuration = Duration(fixed=timedelta(days=1))
    drift_threshold: float = Field(
        default=0.2, gt=0, description="PSI above which a feature drifts"
    )
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="share of drifted features that is an alert"
    )
    performance_floor: float | None = Field(
        default=None,
        description="the metric's worst acceptable value: a floor for a metric to maximise, a "
        "ceiling for an error metric (rmse, mae, log_loss, brier)",
    )
    min_labelled_rows: int = Field(default=100, ge=1)
    seasonal: list[str] = Field(
        default_factory=list,
        description="features that follow the calendar (a month, a day of week): their drift "
        "is reported but does not count toward the dataset drift that retrains",
    )
    features: dict[str, FeatureMonitoring] = Field(
        default_factory=dict,
        description="per-feature overrides, e.g. {month: {ignore: true}, temp: {method: "
        "wasserstein, threshold: 0.2}}",
    )
    thresholds: Literal["fixed", "adaptive"] = Field(
        default="fixed",
        description="adaptive: a feature's threshold widens to the reference's own variability, "
        "mean + adaptive_k standard deviations of its drift between windows of the training "
        "data, never below the fixed threshold",
    )
    adaptive_k: float = Field(default=3.0, gt=0, description="standard deviations (adaptive)")
    reference: ReferenceKind = Field(
        default="training",
        description="what drift compares with: the training data's profile, the same window a "
        "year earlier in the prediction log (same_period_last_year), or the log's previous "
        "reference_window (rolling); without such rows the training profile is used and the "
        "report says so",
    )
    reference_window: DataDuration | None = Field(
        default=None, description="rolling: how much of the log before the window (default 4 windows)"
    )
    min_reference_rows: int = Field(
        default=500,
        ge=1,
        description="fewer logged rows than this in a log reference: use the training profile",
    )
    segments: list[str] = Field(
        default_factory=list,
        description="columns whose values each get their own performance (e.g. [origin, carrier])",
    )
    max_segments: int = Field(default=20, ge=1, description="values per segment column, largest first")
    quality: QualityLimits = Field(default_factory=lambda: QualityLimits())
    engine: Literal["local", "spark"] = Field(
        default="local",
        description="what computes a window's statistics over the prediction log: local "
        "(DuckDB) or spark (the same statistics on Spark, pip install 'modelloop[spark]')",
    )
    spark_master: str | None = Field(
        default=None,
        description="engine spark: the Spark master (default $MODELLOOP_SPARK_MASTER, else local[*])",
    )


class RetrainingConfig(_Section):
    """When monitoring or new data starts a retraining (a schedule or a person always may)."""

    cooldown: DataDuration = Field(
        default=Duration(fixed=timedelta(days=7)),
        description="after a retraining fired by an alert or new data, the data time to wait "
        "before another may fire",
    )
    on_drift: bool = True
    on_performance: bool = True
    min_new_rows: int | None = Field(
        default=None,
        ge=1,
        description="retrain when the data source holds this many rows newer than the last "
        "training's as-of (checked by `modelloop up`); unset: no new-data trigger",
    )
    check_every: WallDuration = Field(
        default=timedelta(minutes=10),
        description="how often `modelloop up` looks for new data (with min_new_rows)",
    )

    @field_validator("check_every")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


class Guardrails(_Section):
    """When a version just swapped in is worse than the one it replaced, during `serving.bake`.

    Only the server's own failures count (5xx): a 4xx is the client's mistake, so a hostile
    client cannot force a rollback.
    """

    max_error_share: float = Field(
        default=0.01, ge=0, le=1, description="share of 5xx answers above which the new version fails"
    )
    max_p99_ratio: float = Field(
        default=2.0, gt=1, description="p99 latency above this multiple of the previous version's fails"
    )
    min_requests: int = Field(
        default=200, ge=1, description="requests (after the warm-up) before a guardrail may judge"
    )
    warmup_requests: int = Field(
        default=50, ge=0, description="the first requests after a swap, not judged (caches warm)"
    )


class ServingConfig(_Section):
    """How `modelloop serve` answers: batching, the prediction log, and the limits of a request.

    Wall-clock settings (measured on the server's clock, not the data's): `log_flush`,
    `body_timeout`, `max_clock_skew`, `reload_interval`, `bake`.
    """

    max_batch: int = Field(default=256, ge=1, description="rows scored together at most")
    max_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="how long a partial batch may wait for requests already being read",
    )
    log_flush: WallDuration = Field(
        default=timedelta(seconds=10), description="how often the write-ahead log moves to Parquet"
    )
    max_body: ByteSize = Field(default=ByteSize(32_000_000), gt=0, description="largest body accepted (413)")
    body_timeout: WallDuration = Field(
        default=timedelta(seconds=30), description="a body still unfinished after this is refused (408)"
    )
    max_clock_skew: WallDuration = Field(
        default=timedelta(days=1), description="how far past the server's clock a row's time may lie"
    )
    max_value_length: int = Field(
        default=1024, ge=1, description="longest text accepted in a category or an id"
    )
    reload_interval: WallDuration = Field(
        default=timedelta(seconds=5),
        description="how often the server checks the registry's champion alias and follows it",
    )
    bake: WallDuration = Field(
        default=timedelta(minutes=10),
        description="how long the previous version stays loaded after a swap, ready to swap back",
    )
    guardrails: Guardrails = Field(default_factory=Guardrails)
    shadow: bool = Field(
        default=False, description="also score the challenger on live traffic, off the request path"
    )
    auth: Literal["writes", "all"] = Field(
        default="writes",
        description="what MODELLOOP_TOKEN protects: 'writes' (/labels, /admin) or 'all' (scoring too)",
    )
    docs: bool = Field(default=False, description="serve the interactive API docs at /docs")

    @field_validator("log_flush", "body_timeout", "reload_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


PIPELINES = ("train", "monitor", "score")


def _valid_cron(value: str | None) -> str | None:
    if value is not None:
        cron_trigger(value, "UTC")  # a ValueError names what is wrong
    return value


class ScheduleConfig(_Section):
    """When `modelloop up` (or an exported Airflow DAG) runs each pipeline by itself: 5-field
    cron, or @hourly, @daily, @weekly, in `schedule_timezone`."""

    monitor: str | None = Field(default=None, description="cron for the monitoring pipeline")
    train: str | None = Field(default=None, description="cron for training (and gating)")
    score: str | None = Field(
        default=None, description="cron for batch scoring of scoring.input to scoring.output"
    )
    _cron = field_validator("monitor", "train", "score")(_valid_cron)

    def items(self) -> list[tuple[str, str]]:
        """(pipeline, cron) for every scheduled pipeline."""
        return [(p, getattr(self, p)) for p in PIPELINES if getattr(self, p) is not None]


class RetriesConfig(_Section):
    """A pipeline run that failed, or whose process died, is tried again `count` times, waiting
    `backoff`, then twice as long each time; when none is left, an alert is raised."""

    count: int = Field(default=1, ge=0, le=20, description="how many times a failed run is retried")
    backoff: WallDuration = Field(
        default=timedelta(minutes=5), description="the wait before the first retry (doubled after)"
    )


class LeasesConfig(_Section):
    """One running instance per pipeline across processes and machines sharing the database."""

    ttl: WallDuration = Field(
        default=timedelta(seconds=60),
        description="how long a lease lasts unless renewed; a run whose holder stops renewing is "
        "failed after it (at once when the holder was a process on this machine that is gone)",
    )

    @field_validator("ttl")
    @classmethod
    def _long_enough(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=2):
            raise ValueError("must be at least 2s (it is renewed at a third of it)")
        return value


class ScoringConfig(_Section):
    """Where `modelloop score` with no arguments (and a scheduled score) reads and writes."""

    input: str | None = Field(
        default=None, description="CSV or Parquet to score (relative to the project file)"
    )
    output: str | None = Field(default=None, description="where the scored rows go (CSV or Parquet)")


class UiConfig(_Section):
    """The dashboard (`GET /ui` on `modelloop serve` and `up`)."""

    mlflow_url: str | None = Field(
        default=None,
        description="the MLflow UI people open (e.g. http://mlflow.internal:5000): the dashboard "
        "links each version and run there",
    )

    @field_validator("mlflow_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        from urllib.parse import urlsplit

        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        return value.strip().rstrip("/")


class Webhook(_Section):
    """A receiver told when an alert opens or resolves (`modelloop.orchestration.webhooks`)."""

    url: str = Field(description="where events are POSTed: an http:// or https:// URL")
    format: Literal["json", "slack"] = Field(
        default="json",
        description="json: the event with the alert; slack: {'text': ...} for an incoming webhook",
    )
    secret: SecretStr | None = Field(
        default=None, description="signs each request (X-Modelloop-Signature, HMAC-SHA256)"
    )
    secret_env: str | None = Field(
        default=None, description="the environment variable holding the secret, read when sending"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        return value.strip()

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give secret or secret_env, not both")
        return self


class AlertsConfig(_Section):
    """Who hears of alerts: webhooks, delivered through an outbox so that a slow or dead receiver
    never holds up a pipeline; a failed delivery is retried `max_attempts` times, waiting
    `backoff`, then twice as long each time."""

    webhooks: list[Webhook] = Field(default_factory=list)
    max_attempts: int = Field(default=5, ge=1, le=50, description="tries per event before it is failed")
    backoff: WallDuration = Field(
        default=timedelta(seconds=30), description="the wait before the first retry (doubled after)"
    )
    timeout: WallDuration = Field(
        default=timedelta(seconds=5), description="how long one request may take"
    )

    @field_validator("timeout")
    @classmethod
    def _sane_timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(minutes=1):
            raise ValueError("must be longer than zero and at most 1m")
        return value

    @field_validator("webhooks")
    @classmethod
    def _distinct_urls(cls, value: list[Webhook]) -> list[Webhook]:
        seen: set[str] = set()
        for hook in value:
            if hook.url in seen:
                raise ValueError(f"{hook.url!r} is listed twice; list each receiver once")
            seen.add(hook.url)
        return value


class ProjectConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    task: Literal["classification", "regression"]
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    retraining: RetrainingConfig = Field(default_factory=RetrainingConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    schedule_timezone: str = Field(
        default="UTC", description="the IANA time zone schedules are read in, e.g. Europe/Paris"
    )
    retries: RetriesConfig = Field(default_factory=RetriesConfig)
    leases: LeasesConfig = Field(default_factory=LeasesConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    ui: UiConfig = Field(default_factory=UiConfig)

    @field_validator("schedule_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone name such as 'UTC' or 'Europe/Paris'") from None
        return value

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ProjectConfig:
        metric_task = METRICS[self.evaluation.metric][0]
        if metric_task != self.task:
            raise ValueError(
                f"{_FIELD_MARK}evaluation.metric: {self.evaluation.metric!r} is a {metric_task} "
                f"metric, but task is {self.task!r}"
            )
        features = self.data.features
        for where, names in (("monitoring.seasonal", self.monitoring.seasonal),
                             ("monitoring.features", list(self.monitoring.features))):
            unknown = [c for c in names if c not in features.all]
            if unknown:
                raise ValueError(
                    f"{_FIELD_MARK}{where}: {', '.join(map(repr, unknown))} "
                    "is not a feature (list columns from data.features)"
                )
        for name, rule in self.monitoring.features.items():
            kind = "numeric" if name in features.numeric else "categorical"
            wrong = {"wasserstein": "numeric", "chi2": "categorical"}.get(rule.method or "")
            if wrong and wrong != kind:
                raise ValueError(
                    f"{_FIELD_MARK}monitoring.features.{name}.method: {rule.method} measures "
                    f"{wrong} features, and {name!r} is {kind}"
                )
            if rule.method == "chi2" and rule.threshold is not None and rule.threshold >= 1:
                raise ValueError(
                    f"{_FIELD_MARK}monitoring.features.{name}.threshold: chi2's threshold is a "
                    f"p-value below 1 (e.g. 0.01), got {rule.threshold}"
                )
        not_columns = [c for c in self.monitoring.segments
                       if c not in (*features.all, self.data.timestamp)]
        if not_columns:
            raise ValueError(
                f"{_FIELD_MARK}monitoring.segments: {', '.join(map(repr, not_columns))} is not a "
                "feature (segments are columns of the prediction log)"
            )
        metric = self.evaluation.metric
        for where, bound in (("gate.floor", self.gate.floor),
                             ("monitoring.performance_floor", self.monitoring.performance_floor)):
            if bound is None:
                continue
            if metric in _UNIT_METRICS and not 0 <= bound <= 1:
                raise ValueError(
                    f"{_FIELD_MARK}{where}: {metric} lies between 0 and 1, so {bound} can never "
                    "be the bar; write it as a fraction (e.g. 0.7)"
                )
            if metric == "r2" and bound > 1:
                raise ValueError(f"{_FIELD_MARK}{where}: r2 is at most 1, so {bound} can never be met")
            if metric in ("rmse", "mae", "log_loss", "mape", "calibration_error") and bound < 0:
                raise ValueError(
                    f"{_FIELD_MARK}{where}: {metric} is never negative, so {bound} can never be met"
                )
        if self.schedule.score is not None and not (self.scoring.input and self.scoring.output):
            raise ValueError(
                f"{_FIELD_MARK}schedule.score: a scheduled score needs scoring.input and "
                "scoring.output (what to score and where to write it)"
            )
        if self.task == "regression" and self.data.positive is not None:
            raise ValueError(
                f"{_FIELD_MARK}data.positive: a positive class only means something when task is "
                "classification"
            )
        return self

    @property
    def maximize(self) -> bool:
        return self.evaluation.direction == "maximize"


#: A cross-field check names its own field: its message starts with this mark and the field.
_FIELD_MARK = "@field "


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = [
        str(p) for p in loc if p not in ("function-after",) and not str(p).startswith("function-")
    ]
    return ".".join(parts) or "(top level)"


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known field (check its spelling)"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if kind != "value_error" and not isinstance(given, (dict, list)):
        message += f", got {given!r}"
    return message


def parse_config(raw: Any, source: str = "modelloop.yaml") -> ProjectConfig:
    """Validate an already-parsed project file; errors name `source` and every bad field."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping of fields (name, task, data, model, ...), "
            f"got {type(raw).__name__}"
        )
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            text = _describe(error)
            if text.startswith(_FIELD_MARK):
                lines.append(f"  {text.removeprefix(_FIELD_MARK)}")
            else:
                lines.append(f"  {_field_path(error['loc'])}: {text}")
        raise ConfigError(f"{source} is not a valid project file:\n" + "\n".join(lines)) from None


def load_config(path: str | Path) -> ProjectConfig:
    """Read and validate a project file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no project file here. Run `modelloop init` to write one, "
            "or pass --project PATH."
        )
    return parse_config(read_yaml(path, "the project file"), str(path))


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content, or a ConfigError naming the file (and the line of a syntax
    error) and `what` it is."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
