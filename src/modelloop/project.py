"""Project: binds the project file, user code and backends. The one facade the CLI and the HTTP
server use; they never reach past it into an adapter."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from modelloop.config import ProjectConfig, load_config
from modelloop.data import (
    Contract,
    DataSource,
    ProjectSource,
    derive_row_ids,
    label_value,
    open_source,
    parse_timestamps,
)
from modelloop.errors import DataError, ModelloopError, UsageError, shown
from modelloop.gate import GateDecision, Rollback, rollback, run_gate
from modelloop.gate.history import reconcile
from modelloop.monitoring.pipeline import MonitoringResult, run_monitoring
from modelloop.registry import ModelVersion, Registry
from modelloop.serving.presence import running_servers
from modelloop.store import LogStore, MetadataDB
from modelloop.timeutil import to_naive
from modelloop.training import TrainingResult, train

if TYPE_CHECKING:
    from modelloop.engines import Progress, ScoreSummary
    from modelloop.serving.holder import ServedModel

DEFAULT_HOME = ".modelloop"


def who() -> str:
    """Who acts, for the record: $MODELLOOP_USER, else the login name."""
    import getpass

    named = os.environ.get("MODELLOOP_USER")
    if named:
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _make_home(home_dir: Path, *, given: bool) -> None:
    """Create the state folder, or say why it cannot be one."""
    where = "--home" if given else "$MODELLOOP_HOME" if os.environ.get("MODELLOOP_HOME") else "state folder"
    if home_dir.exists() and not home_dir.is_dir():
        raise UsageError(f"{where}: {home_dir} is a file, not a folder; point it at a folder")
    try:
        home_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{where}: cannot create the folder {home_dir}: {exc.strerror or exc}") from None


def resolve_home(home: str | Path | None, project_dir: Path) -> Path:
    """--home, else $MODELLOOP_HOME, else `.modelloop` beside the project file."""
    chosen = home or os.environ.get("MODELLOOP_HOME")
    return Path(chosen).resolve() if chosen else (project_dir / DEFAULT_HOME).resolve()


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
        shadow_logs: Callable[[], LogStore] | None = None,
    ) -> None:
        self.config = config
        self.project_dir = project_dir
        self.home = home
        self.registry = registry
        self.db = db
        self.logs = logs
        self._shadow_logs = shadow_logs
        raw = source or open_source(config.data.source, project_dir, config.data.timestamp)
        self.source: DataSource = ProjectSource(raw, config.data, config.task)

    @property
    def name(self) -> str:
        return self.config.name

    def open_shadow_logs(self) -> LogStore:
        """The shadow log (`shadow/<name>/`): the challenger's predictions on live traffic, kept
        apart from the champion's log, with the same layout."""
        if self._shadow_logs is not None:
            return self._shadow_logs()
        from modelloop.store import MemoryLogStore

        data = self.config.data
        return MemoryLogStore(
            self.name,
            id_column=data.id_column,
            timestamp_column=data.timestamp,
            target_column=data.target,
        )

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
            and contract.names("id") == [data.id_column]
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
        self.registry.get_version(self.name, version)  # NotFound names the version
        reconcile(self.registry, self.db, self.name)  # a move made outside modelloop, first
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
        # Added to the last trigger's time, never compared as a length: a cooldown may count months.
        cooldown = self.config.retraining.cooldown
        until = None if last is None else pd.Timestamp(last["as_of"]).to_pydatetime() + cooldown
        if until is not None and as_of < until:
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
    def load_served_model(self, version: int | None = None) -> ServedModel:
        """`version` (default: the champion) loaded, its contract compiled, warmed: ready to serve."""
        from modelloop.serving.holder import load_served_model
        from modelloop.serving.validation import Limits

        if version is None:
            champion = self.champion()
            if champion is None:
                raise ModelloopError(
                    f"{self.name!r} has no champion yet: run `modelloop train` "
                    "(its gate promotes the first candidate that clears the floor)"
                )
            version = champion.version
        settings = self.config.serving
        limits = Limits(
            max_value_length=settings.max_value_length, max_clock_skew=settings.max_clock_skew
        )
        return load_served_model(self.registry, self.name, version, limits=limits)

    def store_labels(self, ids: Sequence[int | str], targets: Sequence[float | int]) -> int:
        """Store validated labels (the server's path); returns how many were stored."""
        data = self.config.data
        return self.logs.append_labels(pd.DataFrame({data.id_column: list(ids), data.target: list(targets)}))

    def ingest_labels(self, frame: pd.DataFrame) -> tuple[int, int]:
        """Store ground truth: (stored, skipped). A row whose target is empty has not arrived yet
        and is skipped; a target the metric cannot use is refused, naming the rows (counting the
        first data row as 1). Without an id column in the project file, a label file may carry
        `row_id` or the row's time and features, from which the id is derived."""
        data = self.config.data
        if data.derived_id and data.id_column not in frame.columns and data.target in frame.columns:
            frame = self._with_derived_ids(frame)
        missing = [c for c in (data.id_column, data.target) if c not in frame.columns]
        if missing:
            raise DataError(
                f"missing column(s) {', '.join(map(repr, missing))}; a label file needs the id column "
                f"{data.id_column!r} and the target column {data.target!r}"
                + (
                    f" (or, for the id, the time {data.timestamp!r} and the features)"
                    if data.derived_id
                    else ""
                )
            )
        targets: list[float | int | None] = []
        bad: list[int] = []
        reason = ""
        for position, value in enumerate(frame[data.target].tolist()):
            try:
                targets.append(label_value(value, self.config.task, data.positive, data.negative))
            except ValueError as exc:
                reason = reason or str(exc)
                bad.append(position)
                targets.append(None)
        if bad:
            example = shown(frame[data.target].iloc[bad[0]])
            raise DataError(
                f"column {data.target!r} {reason}: {len(bad)} row(s) are not "
                f"(rows {[i + 1 for i in bad[:5]]}, e.g. {example})"
            )
        keep = [i for i, t in enumerate(targets) if t is not None]
        empty_ids = frame[data.id_column].isna().to_numpy()
        if empty_ids[keep].any():
            rows = [i + 1 for i in keep if empty_ids[i]][:5]
            count = int(empty_ids[keep].sum())
            raise DataError(f"column {data.id_column!r} is empty in {count} row(s) (rows {rows})")
        kept = pd.DataFrame(
            {
                data.id_column: frame[data.id_column].iloc[keep].tolist(),
                data.target: [targets[i] for i in keep],
            }
        )
        stored = self.logs.append_labels(kept) if keep else 0
        return stored, len(frame) - len(keep)

    def _with_derived_ids(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A label file without `row_id`: the id derived from its time and feature columns."""
        data = self.config.data
        needed = [data.timestamp, *data.features.all]
        absent = [c for c in needed if c not in frame.columns]
        if absent:
            raise DataError(
                f"missing column {data.id_column!r}; without it a label file needs the row's time "
                f"and features to derive it, and {', '.join(map(repr, absent))} "
                f"{'is' if len(absent) == 1 else 'are'} missing"
            )
        stamped = parse_timestamps(frame.copy(), data.timestamp, "the label file")
        try:
            ids = derive_row_ids(
                stamped, data.timestamp, data.features.numeric, data.features.categorical
            )
        except ValueError as exc:
            raise DataError(str(exc)) from None
        return frame.assign(**{data.id_column: ids.to_numpy()})

    def ingest_labels_file(self, path: Path) -> tuple[int, int]:
        if not path.is_file():
            raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
        if not path.name.lower().endswith((".csv", ".csv.gz", ".parquet", ".pq")):
            raise DataError(
                f"{path}: a label file must be CSV (.csv, .csv.gz) or Parquet (.parquet, .pq)"
            )
        as_csv = path.name.lower().endswith((".csv", ".csv.gz"))
        try:
            frame = pd.read_csv(path) if as_csv else pd.read_parquet(path)
        except Exception as exc:  # pandas/pyarrow raise many kinds; all mean "unreadable"
            raise DataError(f"{path}: cannot read it as {'CSV' if as_csv else 'Parquet'}: {exc}") from None
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
            "servers": running_servers(self.home, self.name),
        }

    def rollback(self, *, reason: str, by: str | None = None, to: int | None = None) -> Rollback:
        """Make the previous champion (or version `to`) the champion again, with the reason kept
        (every server following the alias swaps within `serving.reload_interval`)."""
        reconcile(self.registry, self.db, self.name)
        return rollback(self.registry, self.db, self.name, reason=reason, by=by or who(), to=to)

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        """Every gate decision, rollback and move of the champion made outside modelloop, newest
        first: `at, action, version, from_version, by, reason` and the evidence."""
        reconcile(self.registry, self.db, self.name)
        events: list[dict[str, Any]] = []
        for decision in self.db.decisions(limit=limit):
            metrics = decision["metrics"] or {}
            rolled = decision["outcome"] == "rolled_back"
            events.append(
                {
                    "at": decision["created_at"],
                    "action": decision["outcome"],
                    "version": decision["version"],
                    "from_version": metrics.get("from_version")
                    if rolled
                    else metrics.get("champion_version"),
                    "by": metrics.get("by", "gate"),
                    "reason": "; ".join(decision["reasons"]),
                    "evidence": metrics.get("evidence") if rolled else metrics,
                    "as_of": decision["as_of"],
                }
            )
        for move in self.db.alias_history("champion", limit=limit):
            if move["source"] == "external":
                events.append(
                    {
                        "at": move["created_at"],
                        "action": "moved_outside_modelloop",
                        "version": move["version"],
                        "from_version": move["from_version"],
                        "by": move["by"],
                        "reason": move["reason"],
                        "evidence": None,
                        "as_of": None,
                    }
                )
        events.sort(key=lambda e: str(e["at"]), reverse=True)
        return events[:limit]

    # -- batch scoring ----------------------------------------------------------------------------
    def score(
        self,
        input: Path | None = None,
        output: Path | None = None,
        *,
        version: int | None = None,
        engine: str = "local",
        chunk_rows: int = 100_000,
        progress: Progress | None = None,
    ) -> ScoreSummary:
        """Score a CSV or Parquet file with `version` (default: the champion) through the server's
        own `predict`, so a batch and a request get the same numbers; recorded as a `score` run.

        `input` and `output` default to the project file's `scoring` settings, which are relative
        to the project file. The run's as-of is left empty: the project's newest data time would
        cost a read of the whole training source, and the batch's own is known only at the end.
        """
        from modelloop.engines import get_engine
        from modelloop.engines.local import file_format

        settings = self.config.scoring
        source = input or (self.project_dir / settings.input if settings.input else None)
        target = output or (self.project_dir / settings.output if settings.output else None)
        if source is None:
            raise UsageError(
                "nothing to score: pass the file (modelloop score INPUT --out OUTPUT) "
                "or set scoring.input in the project file"
            )
        if target is None:
            raise UsageError(
                f"no output for {source}: pass --out OUTPUT (.csv, .csv.gz, .parquet or .pq) "
                "or set scoring.output in the project file"
            )
        runner = get_engine(engine)
        # The user's own mistakes first, before the model is loaded (seconds) for nothing.
        file_format(source, "input")
        file_format(target, "output")
        if not source.is_file():
            raise DataError(f"{source}: no such file" if not source.exists() else f"{source}: not a file")
        served = self.load_served_model(version)
        run_id = self.db.start_run("score", as_of=None, trigger="manual")
        try:
            summary = runner.score(
                source, target, model=served, chunk_rows=chunk_rows, progress=progress
            )
        except BaseException as exc:  # Ctrl-C included: the ledger must not show it running
            error = str(exc) if isinstance(exc, ModelloopError) else repr(exc)
            self.db.finish_run(
                run_id,
                status="failed",
                detail={
                    "error": error,
                    "input": str(source),
                    "output": str(target),
                    "version": served.version,
                    "engine": engine,
                },
            )
            raise
        self.db.finish_run(run_id, status="succeeded", detail=summary.to_dict())
        return summary

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
    _make_home(home_dir, given=home is not None)
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
    def log_store(kind: str) -> ParquetLogStore:
        return ParquetLogStore(
            storage,
            config.name,
            id_column=config.data.id_column,
            timestamp_column=config.data.timestamp,
            target_column=config.data.target,
            flush_interval=config.serving.log_flush,
            kind=kind,
        )

    return Project(
        config,
        project_dir=path.parent,
        home=home_dir,
        registry=registry,
        db=db,
        logs=log_store("predictions"),
        shadow_logs=lambda: log_store("shadow"),
    )
