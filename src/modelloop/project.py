"""Project: binds the project file, user code and backends. The one facade the CLI and the HTTP
server use; they never reach past it into an adapter."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelloop.config import ProjectConfig, load_config
from modelloop.data import Contract, DataSource, feature_frame, open_source, summarize
from modelloop.errors import BadRequest, DataError, ModelloopError
from modelloop.gate import GateDecision, run_gate
from modelloop.monitoring.pipeline import MonitoringResult, run_monitoring
from modelloop.registry import ModelVersion, Predictor, Registry
from modelloop.store import LogStore, MetadataDB
from modelloop.timeutil import to_naive
from modelloop.training import TrainingResult, train

DEFAULT_HOME = ".modelloop"


def resolve_home(home: str | Path | None, project_dir: Path) -> Path:
    """--home, else $MODELLOOP_HOME, else `.modelloop` beside the project file."""
    chosen = home or os.environ.get("MODELLOOP_HOME")
    return Path(chosen).resolve() if chosen else (project_dir / DEFAULT_HOME).resolve()


@dataclass
class LoadedModel:
    """The champion as the server holds it: version, model, contract, and where rows are logged."""

    name: str
    version: int
    predictor: Predictor
    contract: Contract
    config: ProjectConfig
    logs: LogStore

    def score(self, frame: pd.DataFrame, request_id: str) -> np.ndarray:
        """Validate, predict, and log the rows durably before the caller answers."""
        if frame.empty:
            raise BadRequest("the request holds no rows", problem="empty")
        validated, problems = self.contract.check(frame, serving=True)
        if problems:
            first = problems[0]
            raise BadRequest(
                "; ".join(summarize(problems)),
                column=first.column,
                problem=first.problem,
            )
        data = self.config.data
        contract = self.contract
        features = feature_frame(validated, contract.names("numeric"), contract.names("categorical"))
        predictions = np.asarray(self.predictor.predict(features), dtype="float64").ravel()
        served_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("us")
        log = features.copy()
        log[data.id] = (
            validated[data.id].to_numpy()
            if data.id in validated
            else [f"{request_id}-{i}" for i in range(len(validated))]
        )
        log[data.timestamp] = (
            pd.to_datetime(validated[data.timestamp]).to_numpy()
            if data.timestamp in validated
            else served_at
        )
        log[data.timestamp] = log[data.timestamp].astype("datetime64[us]")
        log["_prediction"] = predictions
        log["_model_version"] = np.int64(self.version)
        log["_request_id"] = request_id
        log["_served_at"] = served_at
        self.logs.append_predictions(log)
        return predictions


@dataclass
class MonitorOutcome:
    result: MonitoringResult
    alerts: list[int] = field(default_factory=list)
    trigger: dict[str, Any] | None = None
    training: TrainingResult | None = None
    decision: GateDecision | None = None


class Project:
    def __init__(
        self,
        config: ProjectConfig,
        *,
        project_dir: Path,
        home: Path,
        registry: Registry,
        db: MetadataDB,
        logs: LogStore,
        source: DataSource | None = None,
    ) -> None:
        self.config = config
        self.project_dir = project_dir
        self.home = home
        self.registry = registry
        self.db = db
        self.logs = logs
        self.source = source or open_source(config.data.source, project_dir, config.data.timestamp)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports" / self.name

    # -- state ------------------------------------------------------------------------------
    def contract(self) -> Contract | None:
        raw = self.db.get_state("contract")
        return Contract.from_dict(raw) if raw else None

    def _contract_fits(self, contract: Contract) -> bool:
        data = self.config.data
        return (
            contract.names("numeric") == data.features.numeric
            and contract.names("categorical") == data.features.categorical
            and contract.names("id") == [data.id]
            and contract.names("timestamp") == [data.timestamp]
            and contract.names("target") == [data.target]
        )

    def champion(self) -> ModelVersion | None:
        return self.registry.alias(self.name, "champion")

    def challenger(self) -> ModelVersion | None:
        return self.registry.alias(self.name, "challenger")

    def _reference_profile(self) -> dict[str, Any] | None:
        champion = self.champion()
        if champion is None:
            return None
        profile: dict[str, Any] = self.registry.read_json(
            self.name, champion.version, "profile.json"
        )
        return profile

    def latest_data_time(self) -> datetime:
        latest = self.source.latest_timestamp()
        if latest is None:
            raise DataError(f"data.source {self.config.data.source!r} holds no rows")
        return to_naive(latest)

    # -- pipelines ----------------------------------------------------------------------------
    def train(
        self, *, as_of: datetime | None = None, trigger: str = "manual", gate: bool = True
    ) -> tuple[TrainingResult, GateDecision | None]:
        """Train a candidate at `as_of` (default: the latest timestamp in the data), then gate it."""
        as_of = as_of or self.latest_data_time()
        run_id = self.db.start_run("train", as_of=as_of, trigger=trigger)
        try:
            contract = self.contract()
            if contract is not None and not self._contract_fits(contract):
                contract = None  # the project file's features changed: infer a contract anew
            result = train(
                self.config,
                source=self.source,
                registry=self.registry,
                contract=contract,
                as_of=as_of,
                trigger=trigger,
                project_dir=self.project_dir,
                reference_profile=self._reference_profile(),
            )
        except DataError as exc:
            self.db.finish_run(run_id, status="failed", detail={"error": str(exc), **exc.report})
            if exc.report:
                self._write_report(f"validation-{as_of:%Y%m%dT%H%M%S}.json", exc.report)
            raise
        except Exception as exc:
            self.db.finish_run(run_id, status="failed", detail={"error": repr(exc)})
            raise
        if result.contract != self.contract():
            self.db.set_state("contract", result.contract.to_dict())
        if trigger == "manual":
            self.db.record_trigger("manual", as_of=as_of, detail={}, fired=True)
        decision = self.gate(result.version.version) if gate else None
        self.db.finish_run(
            run_id,
            status="succeeded",
            detail={
                "version": result.version.version,
                "score": result.score,
                "rows": result.rows,
                "decision": decision.outcome if decision else None,
            },
        )
        return result, decision

    def gate(self, version: int) -> GateDecision:
        contract = self.contract()
        if contract is None:
            raise ModelloopError("no data contract yet: run `modelloop train` first")
        return run_gate(
            self.config,
            version=version,
            source=self.source,
            registry=self.registry,
            contract=contract,
            db=self.db,
        )

    def monitor(self, *, as_of: datetime | None = None, retrain: bool = True) -> MonitorOutcome:
        """Check a window of the prediction log; a breach records an alert and, past the cooldown,
        a retraining trigger that trains a candidate and gates it."""
        as_of = as_of or self.logs.latest_prediction_time()
        if as_of is None:
            raise ModelloopError(
                "the prediction log is empty: serve some predictions first "
                "(modelloop serve, then POST /invocations)"
            )
        as_of = to_naive(as_of)
        result = run_monitoring(
            self.config,
            logs=self.logs,
            registry=self.registry,
            as_of=as_of,
            reports_dir=self.reports_dir,
        )
        self.db.record_monitoring(result.to_dict(), as_of=as_of)
        outcome = MonitorOutcome(result=result)
        for kind in ("performance", "drift"):
            if kind in result.breach_kinds:
                detail: dict[str, Any] = {
                    "message": next(b for b in result.breaches if b.startswith(kind)),
                    "metric": result.metric_value,
                    "report": str(result.report_html),
                }
                if kind == "drift" and result.drift is not None:
                    detail["drifted"] = result.drift.drifted
                    detail["share"] = result.drift.share_drifted
                outcome.alerts.append(self.db.record_alert(kind, as_of=as_of, detail=detail))
            elif result.n_rows:
                self.db.resolve_alerts(kind, as_of=as_of)
        wanted = [
            k
            for k in result.breach_kinds
            if (k == "drift" and self.config.retraining.on_drift)
            or (k == "performance" and self.config.retraining.on_performance)
        ]
        if wanted:
            outcome.trigger = self._trigger(result, wanted, as_of, retrain, outcome)
        return outcome

    def _trigger(
        self,
        result: MonitoringResult,
        kinds: list[str],
        as_of: datetime,
        retrain: bool,
        outcome: MonitorOutcome,
    ) -> dict[str, Any]:
        reason = "monitoring alert at " + as_of.isoformat() + ": " + "; ".join(result.breaches)
        last = self.db.last_fired_trigger()
        cooldown = self.config.retraining.cooldown
        if last is not None and as_of - pd.Timestamp(last["as_of"]).to_pydatetime() < cooldown:
            until = pd.Timestamp(last["as_of"]).to_pydatetime() + cooldown
            detail = {"kinds": kinds, "skipped": f"cooldown until {until.isoformat()}"}
            self.db.record_trigger(reason, as_of=as_of, detail=detail, fired=False)
            return {"fired": False, "reason": reason, **detail}
        if not retrain:
            return {"fired": False, "reason": reason, "kinds": kinds, "skipped": "--no-retrain"}
        self.db.record_trigger(reason, as_of=as_of, detail={"kinds": kinds}, fired=True)
        outcome.training, outcome.decision = self.train(as_of=as_of, trigger=reason)
        return {
            "fired": True,
            "reason": reason,
            "kinds": kinds,
            "version": outcome.training.version.version,
        }

    # -- serving and labels ---------------------------------------------------------------------
    def load_champion(self) -> LoadedModel:
        champion = self.champion()
        if champion is None:
            raise ModelloopError(
                f"{self.name!r} has no champion yet: run `modelloop train` "
                "(its gate promotes the first candidate that clears the floor)"
            )
        contract = Contract.from_dict(
            self.registry.read_json(self.name, champion.version, "contract.json")
        )
        predictor = self.registry.load_predictor(self.name, champion.version)
        return LoadedModel(self.name, champion.version, predictor, contract, self.config, self.logs)

    def ingest_labels(self, frame: pd.DataFrame) -> int:
        """Store ground truth; a target the metric cannot use is refused, naming the rows."""
        target = self.config.data.target
        if target in frame and len(frame):
            values = frame[target]
            if self.config.task == "classification":
                bad = values.notna() & ~values.isin([0, 1, True, False])
                expected = "0 or 1"
            else:
                bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
                expected = "a number"
            if bad.any():
                rows = [int(i) for i in frame.index[bad][:5]]
                raise DataError(f"column {target!r} must be {expected}: {int(bad.sum())} row(s) are not "
                                f"(rows {rows}, e.g. {values[bad].iloc[0]!r})")
        return self.logs.append_labels(frame)

    def ingest_labels_file(self, path: Path) -> int:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        try:
            frame = (
                pd.read_csv(path)
                if path.suffix.lower() in (".csv", ".gz")
                else pd.read_parquet(path)
            )
        except Exception as exc:  # pandas/pyarrow raise many kinds; all mean "unreadable"
            raise DataError(
                f"{path}: cannot read it as {'CSV' if path.suffix == '.csv' else 'Parquet'}: {exc}"
            ) from None
        try:
            return self.ingest_labels(frame)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        def describe(version: ModelVersion | None) -> dict[str, Any] | None:
            if version is None:
                return None
            return {
                "version": version.version,
                "status": version.status,
                "aliases": list(version.aliases),
                "trained_as_of": version.tags.get("modelloop.as_of"),
                "holdout_score": version.tags.get("modelloop.gate.candidate_score"),
                "trigger": version.tags.get("modelloop.trigger"),
            }

        decisions = self.db.decisions(limit=1)
        return {
            "project": self.name,
            "home": str(self.home),
            "metric": self.config.evaluation.metric,
            "champion": describe(self.champion()),
            "challenger": describe(self.challenger()),
            "previous": describe(self.registry.alias(self.name, "previous")),
            "last_decision": decisions[0] if decisions else None,
            "last_monitoring": self.db.last_monitoring(),
            "open_alerts": self.db.open_alerts(),
        }

    def _write_report(self, name: str, payload: dict[str, Any]) -> Path:
        import json

        self.reports_dir.mkdir(parents=True, exist_ok=True)
        path = self.reports_dir / name
        path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        return path


def open_project(
    project_file: str | Path = "modelloop.yaml", home: str | Path | None = None
) -> Project:
    """Build a Project with the backends its settings name (embedded defaults under `home`)."""
    from modelloop.registry import MlflowRegistry
    from modelloop.store import ParquetLogStore

    path = Path(project_file).resolve()
    config = load_config(path)
    home_dir = resolve_home(home, path.parent)
    home_dir.mkdir(parents=True, exist_ok=True)
    tracking = os.environ.get("MODELLOOP_TRACKING_URI") or f"sqlite:///{home_dir / 'mlflow.db'}"
    registry = MlflowRegistry(
        tracking, artifact_root=(home_dir / "mlartifacts").as_uri(), experiment=config.name
    )
    db = MetadataDB(
        os.environ.get("MODELLOOP_DB_URL") or f"sqlite:///{home_dir / 'modelloop.db'}",
        model=config.name,
    )
    storage = os.environ.get("MODELLOOP_STORAGE") or str(home_dir)
    if storage.startswith("s3://"):
        raise ModelloopError(
            "MODELLOOP_STORAGE=s3://... is not supported yet in this version; use a local path"
        )
    logs = ParquetLogStore(
        storage,
        config.name,
        id_column=config.data.id,
        timestamp_column=config.data.timestamp,
        target_column=config.data.target,
    )
    return Project(
        config, project_dir=path.parent, home=home_dir, registry=registry, db=db, logs=logs
    )


def new_request_id() -> str:
    return uuid.uuid4().hex
