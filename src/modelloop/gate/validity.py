"""Validity checks: before any metric, is the candidate a model that can serve at all?

It must load as any MLflow user would load it, answer for rows that cover its data contract (the
missing values and unseen categories the contract allows included), answer one finite number per
row (a probability for a classifier), not answer the same number for every row, and answer a
row within `gate.max_latency_ms`. Then the project's model tests (`tests/model/*.yaml`, see
`modelloop.gate.modeltests`), one check each. Each check is recorded with its numbers; one
failure rejects the candidate, whatever its holdout score.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelloop.data import Contract
from modelloop.registry import Registry

if TYPE_CHECKING:
    from modelloop.gate.modeltests import ModelTest

#: Real holdout rows the checks score (plus one row per edge case the contract allows).
SAMPLE_ROWS = 200
#: One-row calls timed for the latency check (the median is kept).
LATENCY_CALLS = 7
UNSEEN = "__modelloop_unseen__"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def contract_sample(contract: Contract, rows: pd.DataFrame) -> pd.DataFrame:
    """Up to SAMPLE_ROWS real rows, then edge rows built from the first: each nullable feature
    missing, each categorical feature a category never seen."""
    real = rows[contract.features].head(SAMPLE_ROWS).reset_index(drop=True)
    if real.empty:
        return real
    base = real.iloc[[0]]
    edges = []
    for rule in contract.columns:
        if rule.role not in ("numeric", "categorical"):
            continue
        if rule.nullable:
            edges.append(base.assign(**{rule.name: np.nan if rule.role == "numeric" else None}))
        if rule.role == "categorical":
            edges.append(base.assign(**{rule.name: UNSEEN}))
    return pd.concat([real, *edges], ignore_index=True) if edges else real


def check_validity(
    registry: Registry,
    name: str,
    version: int,
    contract: Contract,
    rows: pd.DataFrame,
    *,
    task: str,
    max_latency_ms: float | None,
    model_tests: Sequence[ModelTest] = (),
) -> list[Check]:
    """Every check, in order; a check that cannot run (the model did not load) is not listed.

    `model_tests` (from `load_model_tests`) run last, on the model as loaded here; their
    `from_data` rows are sampled from `rows`, the holdout.
    """
    try:
        predictor = registry.load_predictor(name, version)
    except Exception as exc:
        return [Check("loads", False, f"version {version} does not load: {exc}")]
    checks = [Check("loads", True, f"version {version} loads with mlflow.pyfunc.load_model")]
    sample = contract_sample(contract, rows)
    if sample.empty:
        return [*checks, Check("predicts", False, "no rows to check the model on")]
    edges = len(sample) - min(len(rows), SAMPLE_ROWS)
    try:
        raw = predictor.predict(sample)
    except Exception as exc:
        why = (f"raised on rows covering the contract ({edges} edge rows: missing values "
               f"and unseen categories it allows): {type(exc).__name__}: {exc}")
        return [*checks, Check("predicts", False, why)]
    values = np.asarray(raw, dtype="float64").ravel() if _numeric(raw) else None
    if values is None or values.shape != (len(sample),):
        shape = getattr(raw, "shape", None)
        why = f"expected {len(sample)} numbers, got {type(raw).__name__} {shape}"
        return [*checks, Check("shape", False, why)]
    checks.append(Check("predicts", True, f"answered {len(sample)} rows ({edges} edge rows)",
                        {"rows": len(sample), "edge_rows": edges}))
    bad = int(np.count_nonzero(~np.isfinite(values)))
    outside = int(np.count_nonzero((values < 0) | (values > 1))) if task == "classification" else 0
    checks.append(Check(
        "finite", bad == 0 and outside == 0,
        "every answer a finite number" + (" in [0, 1]" if task == "classification" else "")
        if bad == 0 and outside == 0
        else f"{bad} answers are NaN or infinite, {outside} outside [0, 1]",
        {"not_finite": bad, "outside_unit_interval": outside},
    ))
    real = values[: min(len(rows), SAMPLE_ROWS)]
    finite = real[np.isfinite(real)]
    if len(finite):  # with no finite answer at all, "finite" has said everything
        spread = float(finite.max() - finite.min())
        distinct_inputs = len(sample.iloc[: len(real)].drop_duplicates()) > 1
        constant = spread == 0 and distinct_inputs
        checks.append(Check(
            "not_constant", not constant,
            f"the same answer ({finite[0]:.6g}) for all {len(real)} different rows"
            if constant
            else f"answers spread over {spread:.6g}",
            {"spread": spread},
        ))
    one = sample.iloc[[0]]
    timings = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        predictor.predict(one)
        timings.append((time.perf_counter() - started) * 1000)
    latency = float(np.median(timings))
    fast = max_latency_ms is None or latency <= max_latency_ms
    checks.append(Check(
        "latency", fast,
        f"one row in {latency:.2f} ms"
        + ("" if max_latency_ms is None else f" (gate.max_latency_ms {max_latency_ms:g})"),
        {"one_row_ms": round(latency, 3), "max_latency_ms": max_latency_ms},
    ))
    if model_tests:
        # Imported here: the model tests report in this module's Check.
        from modelloop.gate.modeltests import run_model_tests

        checks.extend(run_model_tests(model_tests, predictor.predict, contract=contract, rows=rows))
    return checks


def _numeric(raw: Any) -> bool:
    try:
        np.asarray(raw, dtype="float64")
    except (TypeError, ValueError):
        return False
    return True
