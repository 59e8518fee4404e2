"""The behaviour every registry adapter shares, asserted once (like scikit-learn's check_estimator)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from modelloop import lazy
from modelloop.errors import NotFound
from modelloop.registry.base import Registry, TrainingRecord

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy.module("pandas")


def _record(name: str, shift: float) -> TrainingRecord:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(["a", "b"], size=200)})
    y = (frame["x"] + shift > 0).astype(int)
    encode = ColumnTransformer(
        [("x", "passthrough", ["x"]), ("c", OneHotEncoder(handle_unknown="ignore"), ["c"])]
    )
    pipeline = Pipeline([("encode", encode), ("model", LogisticRegression())])
    pipeline.fit(frame, y)
    return TrainingRecord(
        name=name,
        pipeline=pipeline,
        task="classification",
        numeric=["x"],
        categorical=["c"],
        example=frame.head(5),
        run_name="check",
        params={"shift": shift},
        metrics={"roc_auc": 0.9},
        version_tags={"modelloop.status": "candidate"},
        json_artifacts={"contract.json": {"columns": ["x", "c"]}},
    )


def check_registry(make: Callable[[], Registry]) -> None:
    """Versions count up, aliases move, tags stick, models predict probabilities, artifacts read back."""
    registry = make()
    assert registry.alias("check-model", "champion") is None
    first = registry.register(_record("check-model", 0.0))
    second = registry.register(_record("check-model", 1.0))
    assert (first.version, second.version) == (1, 2)
    assert first.status == "candidate"
    assert [v.version for v in registry.versions("check-model")] == [1, 2]

    registry.set_alias("check-model", "champion", 1)
    registry.set_alias("check-model", "challenger", 2)
    champion = registry.alias("check-model", "champion")
    assert champion is not None and champion.version == 1 and "champion" in champion.aliases
    registry.set_alias("check-model", "champion", 2)
    champion = registry.alias("check-model", "champion")
    assert champion is not None and champion.version == 2
    registry.delete_alias("check-model", "challenger")
    registry.delete_alias("check-model", "challenger")  # absent: a no-op
    assert registry.alias("check-model", "challenger") is None

    registry.set_tags("check-model", 1, {"modelloop.status": "retired"})
    assert registry.get_version("check-model", 1).status == "retired"
    assert registry.get_version("check-model", 1).description is None
    registry.set_description("check-model", 1, "promoted: roc_auc 0.700 on the 2024-02-01..10 holdout")
    described = registry.get_version("check-model", 1)
    assert described.description == "promoted: roc_auc 0.700 on the 2024-02-01..10 holdout"
    assert described.status == "retired"  # a description leaves the tags alone

    rows = pd.DataFrame({"x": [-3.0, 3.0], "c": ["a", "unseen"]})
    predictions = registry.load_predictor("check-model", 2).predict(rows)
    assert predictions.shape == (2,) and predictions.dtype == np.float64
    assert 0.0 <= predictions[0] < predictions[1] <= 1.0

    assert registry.read_json("check-model", 1, "contract.json") == {"columns": ["x", "c"]}
    evidence = {"outcome": "promoted", "reasons": ["roc_auc 0.7 >= floor 0.6: passed"]}
    registry.write_json("check-model", 1, "gate/decision-1.json", evidence)
    assert registry.read_json("check-model", 1, "gate/decision-1.json") == evidence
    for missing in (
        lambda: registry.get_version("check-model", 99),
        lambda: registry.read_json("check-model", 1, "nope.json"),
    ):
        try:
            missing()
        except NotFound:
            pass
        else:
            raise AssertionError("a missing version or artifact must raise NotFound")
