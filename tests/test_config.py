"""The project file: a valid one loads with its defaults; every mistake names the file and the
field, in a message meant for a person (no traceback, no pydantic internals)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from modelloop import ConfigError
from modelloop.config import DataDuration, WallDuration, load_config, parse_config
from modelloop.timeutil import Duration

SOURCE = "projects/flights/modelloop.yaml"


def assert_readable(error: ConfigError, *fragments: str) -> str:
    """The message names every fragment and reads like a sentence, not a stack."""
    message = str(error)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message
    assert 'File "' not in message
    assert "errors.pydantic.dev" not in message
    assert "ValidationError" not in message
    # No chained exception: a traceback, if one is shown at all, shows only our message.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return message


def mistake(raw: dict[str, Any], section: str, **fields: Any) -> None:
    raw.setdefault(section, {}).update(fields)


def write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "modelloop.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_a_valid_file_loads_with_durations_and_defaults(
        tmp_path: Path, raw_config: dict[str, Any]) -> None:
    raw_config["monitoring"] = {"label_delay": "12h", "window": 3}
    config = load_config(write(tmp_path, raw_config))

    assert config.name == "flights"
    assert config.training.window == timedelta(days=30)
    assert config.evaluation.holdout == timedelta(days=10)
    assert config.monitoring.label_delay == timedelta(hours=12)
    assert config.monitoring.window == timedelta(days=3)  # a bare number is days
    assert config.retraining.cooldown == timedelta(days=7)  # default
    assert isinstance(config.training.window, Duration)
    assert config.data.features.all == ["hour", "distance", "temp", "carrier"]
    assert config.evaluation.direction == "maximize" and config.maximize


def test_data_time_settings_take_months_and_years(raw_config: dict[str, Any]) -> None:
    raw_config["training"] = {"window": "5y"}
    raw_config["evaluation"]["holdout"] = "6mo"
    raw_config["monitoring"] = {"window": "1mo", "label_delay": "1d12h"}
    raw_config["retraining"] = {"cooldown": "1y6mo"}
    config = parse_config(raw_config, SOURCE)
    assert config.training.window == Duration(months=60)
    assert config.evaluation.holdout == Duration(months=6)
    assert config.monitoring.window == Duration(months=1)
    assert config.monitoring.label_delay == timedelta(hours=36)
    assert config.retraining.cooldown == Duration(months=18)


def test_durations_dump_as_the_text_a_user_would_write(raw_config: dict[str, Any]) -> None:
    raw_config["training"] = {"window": "45d"}
    raw_config["evaluation"]["holdout"] = "6mo"
    raw_config["retraining"] = {"cooldown": "12mo"}
    config = parse_config(raw_config, SOURCE)
    dumped = config.model_dump(mode="json")
    assert dumped["training"]["window"] == "45d"
    assert dumped["evaluation"]["holdout"] == "6mo"
    assert dumped["retraining"]["cooldown"] == "1y"
    assert dumped["monitoring"]["label_delay"] == "1d"  # a default dumps the same way
    assert parse_config(dumped, SOURCE) == config


class _Clocks(BaseModel):
    """A stand-in for a section with both kinds of setting."""

    log_flush: WallDuration = timedelta(seconds=10)
    window: DataDuration = Duration(months=1)


def test_a_wall_clock_setting_is_a_timedelta_and_refuses_months() -> None:
    clocks = _Clocks.model_validate({"log_flush": "500ms", "window": "2y"})
    assert type(clocks.log_flush) is timedelta and clocks.log_flush == timedelta(milliseconds=500)
    assert clocks.window == Duration(months=24)
    assert clocks.model_dump(mode="json") == {"log_flush": "500ms", "window": "2y"}
    assert _Clocks().model_dump(mode="json") == {"log_flush": "10s", "window": "1mo"}
    with pytest.raises(ValidationError) as caught:
        _Clocks.model_validate({"log_flush": "1mo"})
    (error,) = caught.value.errors()
    assert error["loc"] == ("log_flush",)
    assert "wall-clock" in error["msg"] and "ms, s, m, h, d" in error["msg"]


@pytest.mark.parametrize(("task", "metric", "maximize"), [
    ("classification", "roc_auc", True),
    ("classification", "log_loss", False),
    ("classification", "brier", False),
    ("regression", "rmse", False),
    ("regression", "r2", True),
])
def test_the_metric_sets_the_direction(raw_config: dict[str, Any], task: str, metric: str,
                                       maximize: bool) -> None:
    raw_config["task"] = task
    raw_config["evaluation"]["metric"] = metric
    assert parse_config(raw_config).maximize is maximize


def test_an_explicit_direction_wins_over_the_metric_default(raw_config: dict[str, Any]) -> None:
    raw_config["evaluation"]["direction"] = "minimize"
    assert parse_config(raw_config).maximize is False


MISTAKES: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    ("negative drift threshold",
     lambda r: mistake(r, "monitoring", drift_threshold=-1),
     ["monitoring.drift_threshold", "greater than 0", "-1"]),
    ("drift threshold not a number",
     lambda r: mistake(r, "monitoring", drift_threshold="high"),
     ["monitoring.drift_threshold", "'high'"]),
    ("unknown top-level field",
     lambda r: r.update(colour="red"),
     ["colour", "not a known field"]),
    ("misspelt nested field",
     lambda r: r["data"].update(timestmp="sched_dep"),
     ["data.timestmp", "not a known field"]),
    ("bad duration",
     lambda r: mistake(r, "training", window="7x"),
     ["training.window", "'7x'", "'7d'"]),
    ("negative duration",
     lambda r: mistake(r, "retraining", cooldown="-3d"),
     ["retraining.cooldown", "'-3d'"]),
    ("duration too long for any date",
     lambda r: mistake(r, "training", window="1000000d"),
     ["training.window", "'1000000d'", "at most 1000 years"]),
    ("years beyond any date",
     lambda r: mistake(r, "monitoring", label_delay="99999y"),
     ["monitoring.label_delay", "'99999y'", "at most 1000 years"]),
    ("ambiguous capital M",
     lambda r: mistake(r, "evaluation", holdout="6M"),
     ["evaluation.holdout", "'6M'", "'mo' for months"]),
    ("regression metric on a classification task",
     lambda r: mistake(r, "evaluation", metric="rmse"),
     ["evaluation.metric", "'rmse'", "regression", "classification"]),
    ("unknown metric",
     lambda r: mistake(r, "evaluation", metric="auc"),
     ["'auc'", "roc_auc"]),
    ("unknown task",
     lambda r: r.update(task="clustering"),
     ["task", "'clustering'", "'classification' or 'regression'"]),
    ("missing section",
     lambda r: r.pop("model"),
     ["model", "required"]),
    ("missing nested field",
     lambda r: r["data"].pop("target"),
     ["data.target", "required"]),
    ("no features at all",
     lambda r: r["data"].update(features={"numeric": [], "categorical": []}),
     ["data.features", "at least one"]),
    ("feature both numeric and categorical",
     lambda r: r["data"]["features"].update(categorical=["carrier", "hour"]),
     ["data.features", "'hour'", "both numeric and categorical"]),
    ("target listed as a feature",
     lambda r: r["data"]["features"]["numeric"].append("delayed"),
     ["data", "'delayed'", "target"]),
    ("negative gate tolerance",
     lambda r: mistake(r, "gate", tolerance=-0.1),
     ["gate.tolerance", "-0.1"]),
    ("drift share above one",
     lambda r: mistake(r, "monitoring", drift_share=1.5),
     ["monitoring.drift_share", "1.5"]),
    ("name with spaces",
     lambda r: r.update(name="flight delays!"),
     ["name", "'flight delays!'"]),
    ("section that is not a mapping",
     lambda r: r.update(training="30d"),
     ["training", "'30d'"]),
]


@pytest.mark.parametrize(("change", "fragments"), [(m[1], m[2]) for m in MISTAKES],
                         ids=[m[0] for m in MISTAKES])
def test_each_mistake_names_the_file_and_the_field(
        raw_config: dict[str, Any], change: Callable[[dict[str, Any]], None],
        fragments: list[str]) -> None:
    change(raw_config)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw_config, SOURCE)
    message = assert_readable(caught.value, *fragments)
    assert message.startswith(SOURCE)


@pytest.mark.parametrize("metric", ["auc", "rmse"])
def test_a_bad_metric_is_reported_under_its_own_field(raw_config: dict[str, Any],
                                                      metric: str) -> None:
    raw_config["evaluation"]["metric"] = metric
    with pytest.raises(ConfigError) as caught:
        parse_config(raw_config, SOURCE)
    assert "\n  evaluation.metric: " in str(caught.value)


def test_every_mistake_is_reported_at_once_one_line_each(raw_config: dict[str, Any]) -> None:
    mistake(raw_config, "monitoring", drift_threshold=0, label_delay="soon")
    mistake(raw_config, "gate", tolerance=-1)
    raw_config["extra"] = True
    with pytest.raises(ConfigError) as caught:
        parse_config(raw_config, SOURCE)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{SOURCE} is not a valid project file:"
    fields = sorted(line.strip().split(":")[0] for line in lines[1:])
    assert fields == ["extra", "gate.tolerance", "monitoring.drift_threshold",
                      "monitoring.label_delay"]


@pytest.mark.parametrize("raw", [None, ["name", "task"], "flights"])
def test_a_file_that_is_not_a_mapping_says_what_it_expected(raw: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, SOURCE)
    assert_readable(caught.value, SOURCE, "expected a mapping", type(raw).__name__)


def test_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "modelloop.yaml"
    path.write_text("name: flights\ntask: classification\ndata:\n  source: [a.csv\n"
                    "model:\n  estimator: x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_readable(caught.value, str(path), "not valid YAML", "line 5")


def test_bad_indentation_names_the_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "modelloop.yaml"
    path.write_text("name: flights\n  task: classification\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_readable(caught.value, str(path), "line 2, column 7")


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "modelloop.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_readable(caught.value, str(path), "modelloop init", "--project")


def test_a_directory_is_not_a_project_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert_readable(caught.value, str(tmp_path), "no project file")


def test_an_empty_file_is_reported_not_crashed_on(tmp_path: Path) -> None:
    path = tmp_path / "modelloop.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_readable(caught.value, str(path), "expected a mapping")


def test_a_file_that_is_not_text_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "modelloop.yaml"
    path.write_bytes(b"\xff\xfe\x00n\x00a\x00m\x00e")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_readable(caught.value, str(path), "cannot read")


def test_a_field_error_in_a_file_names_that_file(tmp_path: Path,
                                                 raw_config: dict[str, Any]) -> None:
    mistake(raw_config, "monitoring", drift_threshold=-0.5)
    path = write(tmp_path, raw_config)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = assert_readable(caught.value, "monitoring.drift_threshold")
    assert message.startswith(str(path))



def test_schedules_retries_and_leases_load_with_their_defaults(raw_config: dict[str, Any]) -> None:
    plain = parse_config(raw_config)
    assert plain.schedule.items() == [] and plain.schedule_timezone == "UTC"
    assert plain.retries.count == 1 and plain.retries.backoff == timedelta(minutes=5)
    assert plain.leases.ttl == timedelta(seconds=60) and plain.retraining.min_new_rows is None
    raw_config.update(
        schedule={"monitor": "*/15 * * * *", "train": "@weekly"},
        schedule_timezone="America/New_York",
        retries={"count": 3, "backoff": "30s"},
        leases={"ttl": "20s"},
    )
    raw_config["retraining"] = {"min_new_rows": 1000, "check_every": "2m"}
    config = parse_config(raw_config)
    assert config.schedule.items() == [("train", "@weekly"), ("monitor", "*/15 * * * *")]
    assert config.retries.backoff == timedelta(seconds=30) and config.leases.ttl == timedelta(seconds=20)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("schedule", {"monitor": "every hour"}, "schedule.monitor: 'every hour' is not a cron schedule"),
        ("schedule", {"train": "0 25 * * *"}, "schedule.train: '0 25 * * *' is not a valid cron"),
        ("schedule", {"train": "0 0 * * 8"}, "weekday '8' is not 0-7"),
        ("schedule", {"deploy": "@daily"}, "schedule.deploy"),
        ("schedule", {"score": "@daily"}, "schedule.score: a scheduled score needs scoring.input"),
        ("schedule_timezone", "Paris", "schedule_timezone: 'Paris' is not a time zone name"),
        ("retries", {"count": -1}, "retries.count"),
        ("retries", {"backoff": "1mo"}, "retries.backoff"),
        ("leases", {"ttl": "1s"}, "leases.ttl: must be at least 2s"),
    ],
)
def test_a_bad_schedule_retry_or_lease_names_its_field(
    raw_config: dict[str, Any], field: str, value: Any, says: str
) -> None:
    raw_config[field] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(raw_config)
    assert says in str(caught.value)
