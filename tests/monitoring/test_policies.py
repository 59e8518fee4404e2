"""What the project file's monitoring policies change in a run, as a user reads it: per-feature
rules, adaptive thresholds, a reference taken from the log, data quality and volume, performance
with and without labels, per segment, prediction drift and the dataset drift that retrains.

Each test logs a week of flights in a `MemoryLogStore` and monitors it against a profile built
by hand (`build_profile`, `reference_variability`) from 150 days of the same flights, so every
number asserted can be recomputed here with pandas and numpy.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.config import ProjectConfig, parse_config
from modelloop.errors import ConfigError
from modelloop.monitoring import MonitoringResult, run_monitoring
from modelloop.monitoring.breaches import BreachKind
from modelloop.monitoring.drift import FeatureDrift
from modelloop.orchestration.policy import TriggerKind, retraining_reasons
from modelloop.stats import build_profile, chi_square, count_frame, estimate, measure, score
from modelloop.stats.metrics import TASK_METRICS
from modelloop.stats.variability import reference_variability
from modelloop.store import LogStore, MemoryLogStore

NUMERIC = ["month", "hour", "temp", "distance"]
CATEGORICAL = ["carrier", "origin"]
CARRIERS = ["UA", "B6", "EV", "DL", "AA", "MQ"]
ORIGINS = ["EWR", "JFK", "LGA"]
TRAIN_START = datetime(2013, 1, 1)
START = datetime(2013, 6, 1)
AS_OF = datetime(2013, 6, 8)  # the window is (START, AS_OF]
#: Rows per week, in training and in an ordinary served week (the reference's cadence).
PER_WEEK = 700


def make_config(**monitoring: Any) -> ProjectConfig:
    return parse_config(
        {
            "name": "flights",
            "task": "classification",
            "data": {
                "source": "flights.parquet",
                "timestamp": "sched_dep",
                "target": "delayed",
                "id": "flight_id",
                "features": {"numeric": NUMERIC, "categorical": CATEGORICAL},
            },
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "evaluation": {"metric": "roc_auc"},
            "monitoring": {"label_delay": "1d", "min_labelled_rows": 100, **monitoring},
        },
        "modelloop.yaml",
    )


def flights(
    n: int,
    seed: int,
    *,
    start: datetime = START,
    days: float = 7,
    first_id: int = 0,
    temp: float = 0.0,
    month: float | None = None,
    carriers: list[float] | None = None,
    prediction_shift: float = 0.0,
    noisy_origin: str | None = None,
) -> pd.DataFrame:
    """Logged flights over `days` from `start`: `delayed` follows the logged prediction (it is
    calibrated), `month` is a calendar feature, `temp` the weather that may move.

    Args:
        month: Every row's month (default: drawn from 1 to 5 as in training).
        carriers: The carriers' shares (default: even).
        prediction_shift: Added to every prediction, not to the chance of a delay.
        noisy_origin: Flights from this airport get predictions that know nothing.
    """
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(1, days * 86400, n)).round()
    hour = rng.integers(5, 24, n).astype("float64")
    distance = rng.choice([187.0, 229.0, 544.0, 1065.0, 1416.0, 2475.0], n)
    carrier = rng.choice(CARRIERS, n, p=carriers)
    origin = rng.choice(ORIGINS, n)
    logit = -1.0 + 0.12 * (hour - 14) + 0.0005 * (distance - 1000) + np.where(carrier == "B6", 1.0, 0.0)
    chance = 1 / (1 + np.exp(-logit))
    delayed = (rng.random(n) < chance).astype("int64")
    prediction = np.clip(chance + prediction_shift, 0.01, 0.99)
    if noisy_origin is not None:
        prediction = np.where(origin == noisy_origin, rng.uniform(0.05, 0.95, n), prediction)
    return pd.DataFrame(
        {
            "flight_id": np.arange(n, dtype="int64") + first_id,
            "sched_dep": pd.Timestamp(start) + pd.to_timedelta(seconds, unit="s"),
            "month": rng.integers(1, 6, n).astype("float64") if month is None else float(month),
            "hour": hour,
            "distance": distance,
            "temp": (rng.normal(60, 15, n) + temp).round(2),
            "carrier": pd.Series(carrier, dtype=object),
            "origin": pd.Series(origin, dtype=object),
            "delayed": delayed,
            "_prediction": prediction,
            "_model_version": 1,
            "_request_id": [f"req-{(first_id + i) // 50}" for i in range(n)],
            "_served_at": pd.Timestamp("2024-01-01"),
        }
    )


@cache
def _training() -> pd.DataFrame:
    return flights(PER_WEEK * 150 // 7, seed=1, start=TRAIN_START, days=150)


@cache
def _reference(variability: bool, prediction: bool) -> dict[str, Any]:
    frame = _training()
    profile = build_profile(frame, NUMERIC, CATEGORICAL)
    if prediction:
        outputs = pd.DataFrame({"prediction": frame["_prediction"]})
        profile["prediction"] = build_profile(outputs, ["prediction"], [])["features"]["prediction"]
    if variability:
        profile["variability"] = reference_variability(
            profile, frame, timestamp="sched_dep", chunk=timedelta(days=7)
        )
    return profile


def reference(*, variability: bool = True, prediction: bool = False) -> dict[str, Any]:
    """The training profile (built once per kind): its cadence is PER_WEEK rows a week."""
    return _reference(variability, prediction)


def logged(*frames: pd.DataFrame, labels: bool = True) -> LogStore:
    store = MemoryLogStore(
        "flights", id_column="flight_id", timestamp_column="sched_dep", target_column="delayed"
    )
    for frame in frames:
        store.append_predictions(frame.drop(columns=["delayed"]))
        if labels:
            store.append_labels(frame[["flight_id", "delayed"]])
    return store


def monitor(
    config: ProjectConfig,
    store: LogStore,
    tmp_path: Path,
    *,
    profile: dict[str, Any] | None = None,
    as_of: datetime = AS_OF,
    not_nullable: tuple[str, ...] = (),
) -> MonitoringResult:
    found = reference() if profile is None else profile
    return run_monitoring(
        config, logs=store, as_of=as_of, reports_dir=tmp_path, profiles=lambda _version: found,
        not_nullable=not_nullable, write=False,
    )


def feature(result: MonitoringResult, name: str) -> FeatureDrift:
    assert result.drift is not None
    [found] = [item for item in result.drift.features if item.feature == name]
    return found


def breached(result: MonitoringResult, kind: BreachKind) -> set[str]:
    return {b.subject for b in result.breaches if b.kind is kind}


def labelled_rows(frame: pd.DataFrame, as_of: datetime = AS_OF) -> pd.DataFrame:
    """The rows whose labels count at `as_of` (label delay 1d), as monitoring should pick them."""
    return frame[frame["sched_dep"] <= pd.Timestamp(as_of - timedelta(days=1))]


# -- 1. per-feature rules -----------------------------------------------------------------------


def test_an_ignored_feature_is_named_never_measured_and_never_breaches(tmp_path: Path) -> None:
    june = flights(PER_WEEK, seed=7, month=6)  # every row in a month training never saw
    store = logged(june)
    plain = monitor(make_config(), store, tmp_path)
    assert plain.drift is not None and feature(plain, "month").drifted  # what ignore is for
    assert breached(plain, BreachKind.DRIFT) == {"month"}

    result = monitor(make_config(features={"month": {"ignore": True}}), store, tmp_path)
    assert result.drift is not None
    assert result.drift.ignored == ["month"]
    assert "month" not in [item.feature for item in result.drift.features]
    assert len(result.drift.features) == 5
    assert breached(result, BreachKind.DRIFT) == set()
    assert (BreachKind.DRIFT, "month") not in result.judged
    assert result.drift.to_dict()["ignored"] == ["month"]


def test_an_ignored_feature_raises_no_quality_alert_either(tmp_path: Path) -> None:
    """`ignore: true` is "not measured, never an alert" (`FeatureMonitoring.ignore`): a month
    training never saw is why a user ignores it, and must not come back as a quality alert."""
    june = flights(PER_WEEK, seed=7, month=6)
    result = monitor(make_config(features={"month": {"ignore": True}}), logged(june), tmp_path)
    about_month = [(str(b.kind), b.subject) for b in result.breaches
                   if b.subject.rpartition(":")[2] == "month"]
    assert about_month == []

def test_a_wasserstein_override_judges_by_it_and_still_reports_psi(tmp_path: Path) -> None:
    # A third of a standard deviation: too little for PSI at 0.2, plenty for Wasserstein at 0.2.
    window = flights(PER_WEEK, seed=7, temp=5.25)
    store = logged(window)
    fixed = feature(monitor(make_config(), store, tmp_path), "temp")
    assert (fixed.method, fixed.threshold, fixed.drifted) == ("psi", 0.2, False)

    result = monitor(
        make_config(features={"temp": {"method": "wasserstein", "threshold": 0.2}}), store, tmp_path
    )
    temp = feature(result, "temp")
    expected = measure(
        reference()["features"]["temp"], reference()["features"]["temp"]["shares"],
        count_frame(reference(), window)["temp"],
    )
    assert (temp.method, temp.threshold, temp.threshold_source) == ("wasserstein", 0.2, "override")
    assert temp.value == temp.wasserstein
    assert temp.wasserstein is not None and math.isclose(temp.wasserstein, expected["wasserstein"] or 0)
    assert temp.value is not None and temp.value > 0.2 and temp.drifted
    # PSI and Jensen-Shannon are shown beside it, and PSI alone would not have flagged it.
    assert math.isclose(temp.psi, expected["psi"] or 0) and temp.psi < 0.2
    assert temp.jensen_shannon is not None
    assert math.isclose(temp.jensen_shannon, expected["jensen_shannon"] or 0)
    [breach] = [b for b in result.breaches if b.subject == "temp"]
    assert breach.kind is BreachKind.DRIFT
    assert breach.message.startswith("drift: temp Wasserstein (normed) ")
    assert breach.message.endswith("> 0.2 (override threshold)")
    assert breach.detail == {"method": "wasserstein", "value": temp.value, "threshold": 0.2}


def test_a_chi2_rule_judges_a_category_by_its_p_value(tmp_path: Path) -> None:
    config = make_config(features={"carrier": {"method": "chi2"}})
    even = feature(monitor(config, logged(flights(PER_WEEK, seed=7)), tmp_path), "carrier")
    assert (even.method, even.threshold, even.threshold_source) == ("chi2", 0.05, "fixed")
    assert even.value is not None and even.value > 0.05 and not even.drifted

    window = flights(PER_WEEK, seed=7, carriers=[0.22, 0.18, 0.15, 0.15, 0.15, 0.15])
    result = monitor(config, logged(window), tmp_path)
    carrier = feature(result, "carrier")
    profile = reference()["features"]["carrier"]
    _statistic, p_value = chi_square(profile["shares"], count_frame(reference(), window)["carrier"].bins)
    assert carrier.value == carrier.chi2
    assert carrier.value is not None and math.isclose(carrier.value, p_value, abs_tol=1e-12)
    assert carrier.value < 0.05 and carrier.drifted
    assert carrier.psi < 0.2  # PSI, still reported, would not have flagged it
    [breach] = [b for b in result.breaches if b.subject == "carrier"]
    assert breach.message.startswith("drift: carrier chi² p-value ")
    assert "< 0.05 (fixed threshold)" in breach.message


def test_uncounted_and_seasonal_features_breach_alone_but_never_raise_the_dataset_alarm(
    tmp_path: Path,
) -> None:
    # Four of six features move (temp, distance, carrier and the calendar's month): more than
    # half, so by default the dataset drifts.
    window = flights(PER_WEEK, seed=7, temp=12.0, month=6, carriers=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    window["distance"] = window["distance"] * 2
    store = logged(window)
    plain = monitor(make_config(), store, tmp_path)
    assert plain.drift is not None
    assert sorted(plain.drift.drifted) == ["carrier", "distance", "month", "temp"]
    assert plain.drift_alarm is not None and plain.drift_alarm.startswith(
        "drift: 4 of 6 features drifted (67% > 50%): "
    )

    config = make_config(seasonal=["month"], features={"temp": {"counted": False}})
    result = monitor(config, store, tmp_path)
    assert result.seasonal == ["month"]
    assert breached(result, BreachKind.DRIFT) == {"carrier", "distance", "month", "temp"}
    assert not feature(result, "month").counted and not feature(result, "temp").counted
    assert result.drift is not None
    assert {item.feature for item in result.drift.counted} == {"carrier", "distance", "hour", "origin"}
    assert result.drift.share_drifted == 0.5  # 2 of the 4 counted: not more than drift_share
    assert result.drift_alarm is None
    assert retraining_reasons(config, result) == []


# -- 2. config errors that name the field -------------------------------------------------------


@pytest.mark.parametrize(
    ("monitoring", "message"),
    [
        ({"features": {"carrier": {"method": "wasserstein"}}},
         "monitoring.features.carrier.method: wasserstein measures numeric features, and 'carrier' "
         "is categorical"),
        ({"features": {"temp": {"method": "chi2"}}},
         "monitoring.features.temp.method: chi2 measures categorical features, and 'temp' is numeric"),
        ({"features": {"carrier": {"method": "chi2", "threshold": 1.0}}},
         "monitoring.features.carrier.threshold: chi2's threshold is a p-value below 1 (e.g. 0.01), got 1.0"),
        ({"features": {"weather": {"ignore": True}}},
         "monitoring.features: 'weather' is not a feature (list columns from data.features)"),
        ({"segments": ["origin", "gate"]},
         "monitoring.segments: 'gate' is not a feature (segments are columns of the prediction log)"),
        ({"seasonal": ["season"]},
         "monitoring.seasonal: 'season' is not a feature (list columns from data.features)"),
    ],
    ids=["wasserstein-on-category", "chi2-on-number", "chi2-p-value-of-1", "unknown-feature",
         "unknown-segment", "unknown-seasonal"],
)
def test_a_rule_that_cannot_apply_is_refused_naming_its_field(
    monitoring: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(**monitoring)
    assert str(refused.value) == f"modelloop.yaml is not a valid project file:\n  {message}"


def test_a_chi2_p_value_below_one_and_a_segment_on_the_timestamp_are_fine() -> None:
    config = make_config(features={"carrier": {"method": "chi2", "threshold": 0.01}},
                         segments=["origin", "sched_dep"])
    assert config.monitoring.features["carrier"].threshold == 0.01
    assert config.monitoring.segments == ["origin", "sched_dep"]


# -- 3. adaptive thresholds ---------------------------------------------------------------------


def test_adaptive_thresholds_widen_to_the_references_own_variability(tmp_path: Path) -> None:
    # A fixed threshold below the week-to-week noise: every calm week would drift.
    fixed = make_config(drift_threshold=0.001)
    config = make_config(thresholds="adaptive", adaptive_k=3.0, drift_threshold=0.001)
    variability = reference()["variability"]["features"]
    calm_rows = logged(flights(PER_WEEK, seed=7))
    assert monitor(fixed, calm_rows, tmp_path).drift.drifted  # type: ignore[union-attr]
    calm = monitor(config, calm_rows, tmp_path)
    assert calm.drift is not None and calm.drift.drifted == [] and calm.breaches == []
    for item in calm.drift.features:
        spread = variability[item.feature]["psi"]
        assert item.threshold_source == "adaptive"
        assert item.threshold == pytest.approx(spread["mean"] + 3.0 * spread["std"], rel=1e-12)

    # A real shift is still far outside the noise.
    result = monitor(config, logged(flights(PER_WEEK, seed=7, temp=5.25)), tmp_path)
    temp = feature(result, "temp")
    assert temp.drifted and temp.threshold_source == "adaptive"
    assert breached(result, BreachKind.DRIFT) == {"temp"}
    assert "(adaptive threshold)" in next(b.message for b in result.breaches if b.subject == "temp")


def test_adaptive_thresholds_never_narrow_below_the_fixed_one(tmp_path: Path) -> None:
    # Stable reference data: the band (mean + 3 sd of PSI between weeks) is tighter than 0.2,
    # so the fixed threshold stands and a small shift is not an alert.
    variability = reference()["variability"]["features"]
    assert all(f["psi"]["mean"] + 3 * f["psi"]["std"] < 0.2 for f in variability.values())
    shifted = logged(flights(PER_WEEK, seed=7, temp=5.25))
    result = monitor(make_config(thresholds="adaptive"), shifted, tmp_path)
    assert result.drift is not None
    assert {(item.threshold, item.threshold_source) for item in result.drift.features} == {(0.2, "fixed")}
    assert not feature(result, "temp").drifted


def test_adaptive_k_widens_the_threshold(tmp_path: Path) -> None:
    store = logged(flights(PER_WEEK, seed=7, temp=5.25))
    spread = reference()["variability"]["features"]["temp"]["psi"]
    config = make_config(thresholds="adaptive", adaptive_k=30.0, drift_threshold=0.001)
    wide = feature(monitor(config, store, tmp_path), "temp")
    assert wide.threshold == pytest.approx(spread["mean"] + 30.0 * spread["std"], rel=1e-12)
    assert wide.drifted is (wide.psi > wide.threshold)


def test_without_variability_adaptive_falls_back_to_the_fixed_threshold(tmp_path: Path) -> None:
    config = make_config(thresholds="adaptive", drift_threshold=0.25)
    result = monitor(config, logged(flights(PER_WEEK, seed=7, temp=5.25)), tmp_path,
                     profile=reference(variability=False))
    assert result.drift is not None
    assert {(item.threshold, item.threshold_source) for item in result.drift.features} == {(0.25, "fixed")}
    assert result.drift.drifted == []


# -- 4. a reference from the log ----------------------------------------------------------------


def test_a_rolling_reference_compares_with_the_previous_weeks(tmp_path: Path) -> None:
    # Summer came weeks ago: temp moved against training, not against the last four weeks.
    earlier = flights(4 * PER_WEEK, seed=3, start=START - timedelta(days=28), days=28, temp=12.0,
                      first_id=100_000)
    window = flights(PER_WEEK, seed=7, temp=12.0)
    store = logged(earlier, window)
    against_training = monitor(make_config(), store, tmp_path)
    assert feature(against_training, "temp").drifted
    assert against_training.reference == {"kind": "training", "start": None, "end": None, "note": None}

    result = monitor(make_config(reference="rolling"), store, tmp_path)
    assert result.reference == {
        "kind": "rolling", "requested": "rolling",
        "start": "2013-05-04T00:00:00", "end": "2013-06-01T00:00:00", "note": None,
    }
    temp = feature(result, "temp")
    assert temp.reference == "rolling" and not temp.drifted
    assert result.drift is not None and result.drift.drifted == []
    assert all(item.reference == "rolling" for item in result.drift.features)
    # The reference bars are the earlier weeks' shares in the training profile's bins.
    counted = count_frame(reference(), earlier)["temp"]
    assert temp.reference_shares == pytest.approx(list(counted.shares()), abs=1e-12)
    assert breached(result, BreachKind.DRIFT) == set()


def test_the_same_period_last_year_is_the_reference_when_logged(tmp_path: Path) -> None:
    last_year = flights(PER_WEEK, seed=3, start=START - timedelta(days=365), temp=12.0, first_id=100_000)
    store = logged(last_year, flights(PER_WEEK, seed=7, temp=12.0))
    result = monitor(make_config(reference="same_period_last_year"), store, tmp_path)
    assert result.reference["kind"] == "same_period_last_year"
    assert (result.reference["start"], result.reference["end"]) == (
        "2012-06-01T00:00:00", "2012-06-08T00:00:00",
    )
    temp = feature(result, "temp")
    assert temp.reference == "same_period_last_year" and not temp.drifted


def test_too_few_logged_rows_fall_back_to_the_training_profile_and_say_why(tmp_path: Path) -> None:
    earlier = flights(120, seed=3, start=START - timedelta(days=28), days=28, temp=12.0, first_id=100_000)
    store = logged(earlier, flights(PER_WEEK, seed=7, temp=12.0))
    result = monitor(make_config(reference="rolling", min_reference_rows=500), store, tmp_path)
    assert result.reference["kind"] == "training"
    assert result.reference["requested"] == "rolling"
    assert result.reference["note"] == (
        "rolling (2013-05-04 to 2013-06-01): 120 logged rows, fewer than "
        "monitoring.min_reference_rows (500), so the training profile is the reference"
    )
    temp = feature(result, "temp")
    assert temp.reference == "training" and temp.drifted


def test_a_per_feature_reference_leaves_the_others_on_training(tmp_path: Path) -> None:
    earlier = flights(4 * PER_WEEK, seed=3, start=START - timedelta(days=28), days=28, temp=12.0,
                      first_id=100_000)
    store = logged(earlier, flights(PER_WEEK, seed=7, temp=12.0))
    result = monitor(make_config(features={"temp": {"reference": "rolling"}}), store, tmp_path)
    assert feature(result, "temp").reference == "rolling"
    assert not feature(result, "temp").drifted
    assert feature(result, "hour").reference == "training"


# -- 5. quality and volume ----------------------------------------------------------------------


def test_quality_breaches_name_the_check_and_the_feature(tmp_path: Path) -> None:
    window = flights(PER_WEEK, seed=7)
    rng = np.random.default_rng(5)
    window.loc[rng.random(PER_WEEK) < 0.3, "temp"] = np.nan  # training had none missing
    window.loc[window.index[:70], "distance"] = 5000.0  # 10% beyond the longest trained flight
    window.loc[window.index[100:170], "carrier"] = "ZZ"  # 10% a carrier training never saw
    window.loc[window.index[200:214], "origin"] = None  # 2%: under the missing limit, not the contract
    result = monitor(make_config(), logged(window), tmp_path, not_nullable=("origin", "hour"))

    assert breached(result, BreachKind.QUALITY) == {
        "missing:temp", "out_of_range:distance", "unseen:carrier", "contract:origin",
    }
    share = float(window["temp"].isna().mean())
    assert result.quality["missing"]["temp"] == {"share": pytest.approx(share), "reference_share": 0.0}
    assert result.quality["missing"]["origin"]["share"] == pytest.approx(14 / PER_WEEK)
    found = result.quality["out_of_range"]["distance"]
    assert (found["count"], found["max_seen"], found["reference_max"]) == (70, 5000.0, 2475.0)
    assert result.quality["unseen_categories"]["carrier"]["values"] == ["ZZ"]
    assert result.quality["unseen_categories"]["carrier"]["count"] == 70
    assert result.quality["contract"] == {
        "origin": {"count": 14, "share": pytest.approx(14 / PER_WEEK),
                   "rule": "not nullable (missing or not a value of its type)"},
    }
    # Every check that ran is judged, breached or clean: a clean one resolves its alert.
    quality = {subject for kind, subject in result.judged if kind is BreachKind.QUALITY}
    assert quality == {
        *(f"missing:{name}" for name in [*NUMERIC, *CATEGORICAL]),
        *(f"out_of_range:{name}" for name in NUMERIC),
        *(f"unseen:{name}" for name in CATEGORICAL),
        "contract:origin", "contract:hour",
    }
    assert {(b.kind, b.subject) for b in result.breaches} <= set(result.judged)
    message = next(b.message for b in result.breaches if b.subject == "missing:temp")
    assert message == f"quality: temp is missing in {share:.1%} of rows, 0.0% in training"


def test_small_quality_findings_stay_under_their_limits(tmp_path: Path) -> None:
    window = flights(PER_WEEK, seed=7)
    window.loc[window.index[:14], "distance"] = 5000.0  # 2%, under out_of_range 5%
    window.loc[window.index[100:114], "carrier"] = "ZZ"  # 2%, under unseen 5%
    result = monitor(make_config(), logged(window), tmp_path)
    assert result.quality["out_of_range"]["distance"]["count"] == 14
    assert result.quality["unseen_categories"]["carrier"]["count"] == 14
    assert breached(result, BreachKind.QUALITY) == set()
    assert result.quality["contract"] == {}
    # A lower limit in the project file makes the same findings breaches.
    strict = make_config(quality={"out_of_range": 0.01, "unseen": 0.01})
    assert breached(monitor(strict, logged(window), tmp_path), BreachKind.QUALITY) == {
        "out_of_range:distance", "unseen:carrier",
    }


def test_volume_is_judged_against_the_references_cadence(tmp_path: Path) -> None:
    rows = reference()["variability"]["rows"]
    expected = float(rows["mean"])  # one chunk is one 7-day window
    spread = 3.0 * float(rows["std"])
    normal = monitor(make_config(), logged(flights(PER_WEEK, seed=7)), tmp_path)
    assert normal.quality["volume"] == {
        "rows": PER_WEEK, "expected": pytest.approx(expected),
        "low": pytest.approx(expected - spread), "high": pytest.approx(expected + spread),
        "anomaly": False, "note": None,
    }
    assert (BreachKind.VOLUME, "") in normal.judged and normal.breach(BreachKind.VOLUME) is None

    quiet = monitor(make_config(), logged(flights(150, seed=7)), tmp_path)
    assert quiet.quality["volume"]["anomaly"] is True
    breach = quiet.breach(BreachKind.VOLUME)
    assert breach is not None and breach.subject == ""
    assert breach.message.startswith(f"volume: 150 rows in the window, expected {expected - spread:,.0f} to ")
    assert (BreachKind.VOLUME, "") in quiet.judged

    no_cadence = monitor(make_config(), logged(flights(150, seed=7)), tmp_path,
                         profile=reference(variability=False))
    assert no_cadence.breach(BreachKind.VOLUME) is None
    assert (BreachKind.VOLUME, "") not in no_cadence.judged
    assert no_cadence.quality["volume"]["note"] == (
        "the reference has no cadence to compare with (trained on too short a span)"
    )
    off = monitor(make_config(quality={"volume": False}), logged(flights(150, seed=7)), tmp_path)
    assert "volume" not in off.quality and off.breach(BreachKind.VOLUME) is None


# -- 6. performance -----------------------------------------------------------------------------


def test_coverage_and_every_metric_on_the_labels_that_had_arrived(tmp_path: Path) -> None:
    window = flights(PER_WEEK, seed=7)
    rng = np.random.default_rng(9)
    labelled = window[rng.random(PER_WEEK) < 0.6]
    store = logged(window, labels=False)
    store.append_labels(labelled[["flight_id", "delayed"]])
    result = monitor(make_config(), store, tmp_path)

    arrived = labelled_rows(labelled)
    eligible = len(labelled_rows(window))
    assert result.coverage == {
        "rows": PER_WEEK, "eligible": eligible, "labelled": len(arrived),
        "share": pytest.approx(len(arrived) / eligible),
    }
    assert result.n_labelled == len(arrived) and result.metric_note is None
    assert set(result.metrics) == set(TASK_METRICS["classification"])
    for name, value in result.metrics.items():
        expected = score(name, arrived["delayed"], arrived["_prediction"])
        assert value is not None and expected is not None
        assert math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12), name
    assert result.metric_value == result.metrics["roc_auc"]
    assert result.estimated is None  # labels say: nothing is estimated
    assert (BreachKind.PERFORMANCE, "roc_auc") in result.judged


def test_with_too_few_labels_the_metric_is_estimated_and_an_estimate_never_retrains(
    tmp_path: Path,
) -> None:
    window = flights(PER_WEEK, seed=7)
    store = logged(window, labels=False)
    store.append_labels(labelled_rows(window).iloc[:40][["flight_id", "delayed"]])
    config = make_config(performance_floor=0.9)
    result = monitor(config, store, tmp_path)

    assert result.metric_value is None and result.metrics == {}
    assert result.metric_note == "40 labelled rows, fewer than monitoring.min_labelled_rows (100)"
    assert result.estimated is not None
    assert (result.estimated["method"], result.estimated["rows"]) == ("CBPE", PER_WEEK)
    for name in ("roc_auc", "accuracy", "f1"):
        expected = estimate(name, window["_prediction"])
        assert expected is not None
        assert math.isclose(result.estimated["metrics"][name], expected, rel_tol=1e-9), name
    assert result.estimated["value"] == result.estimated["metrics"]["roc_auc"] < 0.9

    [breach] = [b for b in result.breaches if b.kind is BreachKind.PERFORMANCE]
    assert breach.subject == "estimated:roc_auc"
    assert breach.detail["estimated"] is True
    assert (BreachKind.PERFORMANCE, "estimated:roc_auc") in result.judged
    assert (BreachKind.PERFORMANCE, "roc_auc") not in result.judged
    assert retraining_reasons(config, result) == []


def test_the_note_counts_thousands_as_the_user_wrote_them(tmp_path: Path) -> None:
    window = flights(PER_WEEK, seed=7)
    result = monitor(make_config(min_labelled_rows=10_000), logged(window), tmp_path)
    n = len(labelled_rows(window))
    assert result.metric_note == f"{n} labelled rows, fewer than monitoring.min_labelled_rows (10,000)"


def test_segments_get_their_own_metric_and_only_the_primary_one_retrains(tmp_path: Path) -> None:
    window = flights(3 * PER_WEEK, seed=7, noisy_origin="JFK")
    store = logged(window)
    arrived = labelled_rows(window)
    overall = score("roc_auc", arrived["delayed"], arrived["_prediction"])
    by_origin = {
        origin: score("roc_auc", rows["delayed"], rows["_prediction"])
        for origin, rows in arrived.groupby("origin")
    }
    assert overall is not None and by_origin["JFK"] is not None
    assert by_origin["JFK"] < overall and by_origin["JFK"] < min(by_origin["EWR"], by_origin["LGA"])
    floor = round((by_origin["JFK"] + min(overall, by_origin["EWR"], by_origin["LGA"])) / 2, 3)

    config = make_config(segments=["origin"], performance_floor=floor)
    result = monitor(config, store, tmp_path)
    assert [(s["column"], s["value"]) for s in result.segments] == sorted(
        (("origin", o) for o in ORIGINS), key=lambda cv: (-int((window["origin"] == cv[1]).sum()), cv[1])
    )
    for segment in result.segments:
        rows = arrived[arrived["origin"] == segment["value"]]
        assert segment["rows"] == int((window["origin"] == segment["value"]).sum())
        assert segment["labelled"] == len(rows)
        assert math.isclose(segment["metric"], by_origin[segment["value"]], rel_tol=1e-9)
        for name, value in segment["metrics"].items():
            expected = score(name, rows["delayed"], rows["_prediction"])
            assert expected is not None and math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12)
        assert segment["breach"] is (segment["value"] == "JFK")
        assert (BreachKind.PERFORMANCE, f"roc_auc@origin={segment['value']}") in result.judged
    assert breached(result, BreachKind.PERFORMANCE) == {"roc_auc@origin=JFK"}
    assert retraining_reasons(config, result) == []

    # The primary metric below the floor is the condition that retrains.
    high = make_config(segments=["origin"], performance_floor=0.99)
    below = monitor(high, store, tmp_path)
    assert breached(below, BreachKind.PERFORMANCE) == {
        "roc_auc", "roc_auc@origin=EWR", "roc_auc@origin=JFK", "roc_auc@origin=LGA",
    }
    reasons = retraining_reasons(high, below)
    assert [kind for kind, _why in reasons] == [TriggerKind.PERFORMANCE]
    assert reasons[0][1] == (
        f"performance: roc_auc {overall:.4f} on {len(arrived):,} labelled rows is below the floor 0.9900"
    )


def test_a_segment_with_too_few_labels_is_shown_but_not_judged(tmp_path: Path) -> None:
    window = flights(PER_WEEK, seed=7)
    store = logged(window)
    result = monitor(make_config(segments=["origin"], performance_floor=0.5, min_labelled_rows=300),
                     store, tmp_path)
    assert result.metric_value is not None  # about 600 labelled rows in all
    for segment in result.segments:
        assert segment["labelled"] < 300
        assert segment["metric"] is None and segment["breach"] is False
        assert (BreachKind.PERFORMANCE, f"roc_auc@origin={segment['value']}") not in result.judged


# -- 7. prediction drift ------------------------------------------------------------------------


def test_the_models_output_drifts_apart_from_the_features(tmp_path: Path) -> None:
    profile = reference(prediction=True)
    calm = monitor(make_config(), logged(flights(PER_WEEK, seed=7)), tmp_path, profile=profile)
    assert calm.drift is not None and calm.drift.prediction is not None
    assert not calm.drift.prediction.drifted
    assert (BreachKind.DRIFT, "prediction") in calm.judged

    result = monitor(make_config(), logged(flights(PER_WEEK, seed=7, prediction_shift=0.25)), tmp_path,
                     profile=profile)
    assert result.drift is not None and result.drift.prediction is not None
    prediction = result.drift.prediction
    assert prediction.feature == "prediction" and prediction.drifted
    assert prediction.counted is False
    names = [item.feature for item in result.drift.features]
    assert "prediction" not in names and "_prediction" not in names
    assert result.drift.drifted == []  # the inputs did not move
    assert breached(result, BreachKind.DRIFT) == {"prediction"}
    assert result.drift_alarm is None
    assert result.drift.to_dict()["prediction"]["feature"] == "prediction"


def test_a_profile_without_predictions_has_no_prediction_drift(tmp_path: Path) -> None:
    result = monitor(make_config(), logged(flights(PER_WEEK, seed=7, prediction_shift=0.25)), tmp_path)
    assert result.drift is not None and result.drift.prediction is None
    assert (BreachKind.DRIFT, "prediction") not in result.judged


# -- 8. the dataset drift alarm -----------------------------------------------------------------


def test_more_than_drift_share_of_the_features_drifting_retrains(tmp_path: Path) -> None:
    window = flights(PER_WEEK, seed=7, temp=12.0, month=6, carriers=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    window["distance"] = window["distance"] * 2
    config = make_config()
    result = monitor(config, logged(window), tmp_path)
    assert result.drift is not None and result.drift.share_drifted == pytest.approx(4 / 6)
    assert result.drift_alarm is not None
    assert result.drift_alarm.startswith("drift: 4 of 6 features drifted (67% > 50%): ")
    for name in ("carrier", "distance", "month", "temp"):
        assert f"{name} (" in result.drift_alarm
    assert [(kind, why) for kind, why in retraining_reasons(config, result)] == [
        (TriggerKind.DRIFT, result.drift_alarm)
    ]
    off = make_config()
    off.retraining.on_drift = False
    assert retraining_reasons(off, result) == []


def test_one_drifted_feature_among_many_is_an_alert_not_a_retraining(tmp_path: Path) -> None:
    config = make_config()
    result = monitor(config, logged(flights(PER_WEEK, seed=7, temp=12.0)), tmp_path)
    assert result.drift is not None and result.drift.drifted == ["temp"]
    [breach] = result.breaches
    assert (breach.kind, breach.subject) == (BreachKind.DRIFT, "temp")
    assert result.alert
    assert result.drift_alarm is None
    assert retraining_reasons(config, result) == []


def test_exactly_drift_share_is_not_more_than_it(tmp_path: Path) -> None:
    # Three of six drift: 50% is not more than drift_share 0.5.
    window = flights(PER_WEEK, seed=7, temp=12.0, month=6)
    window["distance"] = window["distance"] * 2
    result = monitor(make_config(), logged(window), tmp_path)
    assert result.drift is not None and result.drift.share_drifted == 0.5
    assert result.drift_alarm is None
    assert breached(result, BreachKind.DRIFT) == {"distance", "month", "temp"}
