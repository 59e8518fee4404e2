"""Report payloads for the tests: a monitoring result with every section, and a demo summary."""

from __future__ import annotations

import copy
from typing import Any

EVIL = "<script>alert('x')</script>"

_TEMP = {
    "feature": "temp",
    "kind": "numeric",
    "method": "psi",
    "value": 0.41,
    "threshold": 0.25,
    "threshold_source": "fixed",
    "drifted": True,
    "ignored": False,
    "counted": True,
    "psi": 0.41,
    "jensen_shannon": 0.2,
    "wasserstein": 0.6,
    "chi2": None,
    "n": 12345,
    "labels": ["<= 30", "(30, 50]", "(50, 70]", "> 70", "missing"],
    "reference_shares": [0.2, 0.3, 0.3, 0.15, 0.05],
    "current_shares": [0.05, 0.15, 0.3, 0.45, 0.05],
}

MONITORING: dict[str, Any] = {
    "model": "flight-delays",
    "as_of": "2013-07-08T00:00:00",
    "window": {"start": "2013-07-01T00:00:00", "end": "2013-07-08T00:00:00"},
    "n_rows": 12345,
    "n_labelled": 9876,
    "reference": {
        "kind": "same_period_last_year",
        "start": None,
        "end": None,
        "note": "no traffic a year ago: fell back to the training data",
    },
    "metric": {
        "name": "roc_auc",
        "value": 0.6123,
        "note": None,
        "floor": 0.65,
        "direction": "maximize",
        "estimated": {"value": 0.6345, "method": "CBPE", "rows": 2469},
    },
    "metrics": {"roc_auc": 0.6123, "accuracy": 0.8, "log_loss": 0.4567},
    "coverage": {"rows": 12345, "eligible": 10000, "labelled": 9876, "share": 0.9876},
    "segments": [
        {"column": "origin", "value": "JFK", "rows": 5000, "labelled": 4000, "metric": 0.6,
         "estimated": 0.62, "breach": True},
        {"column": "origin", "value": "LGA", "rows": 7345, "labelled": 5876, "metric": 0.7,
         "estimated": None, "breach": False},
    ],
    "drift": {
        "threshold": 0.25,
        "n_rows": 12345,
        "drifted": ["temp", EVIL],
        "share_drifted": 2 / 3,
        "features": [
            _TEMP,
            {**_TEMP, "feature": EVIL, "value": 0.9, "psi": 0.9, "threshold_source": "override"},
            {**_TEMP, "feature": "carrier", "kind": "categorical", "method": "jensen_shannon",
             "value": 0.05, "psi": 0.03, "jensen_shannon": 0.05, "wasserstein": None,
             "threshold": 0.1, "threshold_source": "adaptive", "drifted": False,
             "labels": ["UA", "DL", "<b>new</b>"], "reference_shares": [0.6, 0.4, 0.0],
             "current_shares": [0.55, 0.4, 0.05]},
            {**_TEMP, "feature": "month", "value": 0.8, "psi": 0.8, "drifted": True,
             "counted": False, "threshold_source": "fixed"},
            {**_TEMP, "feature": "row_hash", "value": 0.0, "psi": 0.0, "drifted": False,
             "ignored": True, "counted": False},
        ],
        "prediction": {**_TEMP, "feature": "prediction", "value": 0.12, "psi": 0.12,
                       "drifted": False, "labels": ["0-0.5", "0.5-1"],
                       "reference_shares": [0.7, 0.3], "current_shares": [0.6, 0.4]},
    },
    "quality": {
        "n_rows": 12345,
        "missing": {"temp": {"share": 0.1, "reference_share": 0.0}, "dewp": {"share": 0.0,
                    "reference_share": 0.0}},
        "out_of_range": {"temp": {"count": 12, "share": 0.00097, "min_seen": -3.0, "max_seen": 140.0,
                                  "reference_min": 1.0, "reference_max": 100.0}},
        "unseen_categories": {"carrier": {"count": 1234, "share": 0.1, "values": ["<b>new</b>", "ZZ"]}},
        "contract": {"distance": {"count": 3, "share": 0.0002, "rule": "distance >= 0"}},
        "volume": {"rows": 12345, "expected": 20000.0, "low": 15000.0, "high": 25000.0,
                   "anomaly": True, "note": "expected from the reference's daily cadence"},
    },
    "versions": {"7": 10000, "8": 2345},
    "breaches": [
        {"kind": "performance", "subject": "roc_auc", "message": "roc_auc 0.612 below the floor 0.650"},
        {"kind": "drift", "subject": "temp", "message": "temp drifted: PSI 0.410 > 0.250"},
        {"kind": "volume", "subject": "rows", "message": "12,345 rows, expected 15,000 to 25,000"},
    ],
    "alerts": {"opened": [41, 42], "still_open": [40], "resolved": []},
    "trigger": {"fired": True, "reason": "performance below the floor", "kinds": ["performance"],
                "skipped": None, "version": 9, "decision": "rejected"},
    "history": [
        {"as_of": "2013-06-10T00:00:00", "metric": 0.71, "estimated": None, "n_labelled": 9000,
         "coverage": 0.95, "drifted": []},
        {"as_of": "2013-06-17T00:00:00", "metric": 0.69, "estimated": 0.7, "n_labelled": 9100,
         "coverage": 0.96, "drifted": []},
        {"as_of": "2013-06-24T00:00:00", "metric": None, "estimated": 0.66, "n_labelled": 0,
         "coverage": 0.0, "drifted": ["temp"]},
        {"as_of": "2013-07-01T00:00:00", "metric": 0.66, "estimated": 0.65, "n_labelled": 9500,
         "coverage": 0.97, "drifted": ["temp"]},
    ],
}

DEMO: dict[str, Any] = {
    "title": "flight-delays: a year in production (NYC flights 2013)",
    "model": "flight-delays",
    "metric": "roc_auc",
    "floor": 0.65,
    "direction": "maximize",
    "weeks": [
        {"number": i + 1, "ending": f"2013-03-{7 * (i + 1):02d}", "champion": 1 if i < 2 else 2,
         "metric": value, "n_labelled": 4000 + 100 * i, "drifted": ["temp"] if i == 2 else [],
         "breaches": [{"kind": "drift", "subject": "temp", "message": f"temp drifted {EVIL}"}]
         if i == 2 else [],
         "decisions": ["v2 promoted (0.712 vs v1 0.690)"] if i == 2 else [],
         "report": f"monitor-201303{7 * (i + 1):02d}T000000.html"}
        for i, value in enumerate([0.71, 0.69, None, 0.66])
    ],
    "decisions": [
        {"version": 1, "outcome": "promoted", "as_of": "2013-03-01T00:00:00",
         "reasons": ["roc_auc 0.712 >= floor 0.650: passed"]},
        {"version": 2, "outcome": "rejected", "as_of": "2013-03-22T00:00:00",
         "reasons": ["roc_auc 0.640 < floor 0.650: failed", EVIL]},
    ],
}


def monitoring() -> dict[str, Any]:
    return copy.deepcopy(MONITORING)


def demo() -> dict[str, Any]:
    return copy.deepcopy(DEMO)
