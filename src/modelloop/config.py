"""The project file (`modelloop.yaml`): its schema, and errors that name the file and the field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelloop.errors import ConfigError
from modelloop.timeutil import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

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
}


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


class DataConfig(_Section):
    source: str = Field(description="Parquet/CSV path or glob, or 'module:function'")
    timestamp: str
    target: str
    id: str
    features: Features

    @model_validator(mode="after")
    def _distinct_roles(self) -> DataConfig:
        special = {"timestamp": self.timestamp, "target": self.target, "id": self.id}
        for role, column in special.items():
            if column in self.features.all:
                raise ValueError(f"column {column!r} is the {role}; it cannot also be a feature")
        return self


class ModelConfig(_Section):
    estimator: str = Field(description="class path of a scikit-learn estimator")
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(_Section):
    window: Duration = Field(default=timedelta(days=60), description="labelled history used to fit")


class EvaluationConfig(_Section):
    metric: str = "roc_auc"
    direction: Literal["maximize", "minimize"] | None = None
    holdout: Duration = timedelta(days=14)

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


class MonitoringConfig(_Section):
    window: Duration = timedelta(days=7)
    label_delay: Duration = timedelta(days=1)
    drift_threshold: float = Field(
        default=0.2, gt=0, description="PSI above which a feature drifts"
    )
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="share of drifted features that is an alert"
    )
    performance_floor: float | None = None
    min_labelled_rows: int = Field(default=100, ge=1)


class RetrainingConfig(_Section):
    cooldown: Duration = timedelta(days=7)
    on_drift: bool = True
    on_performance: bool = True


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

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ProjectConfig:
        metric_task = METRICS[self.evaluation.metric][0]
        if metric_task != self.task:
            raise ValueError(
                f"{_FIELD_MARK}evaluation.metric: {self.evaluation.metric!r} is a {metric_task} "
                f"metric, but task is {self.task!r}"
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
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the project file: {exc}") from None
    return parse_config(raw, str(path))
