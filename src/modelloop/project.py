"""Project: binds the project file, user code and backends. The one facade the CLI and the HTTP
server use; they never reach past it into an adapter."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelloop.backends import (
    Backend,
    BackendKind,
    Backends,
    data_backend,
    kind_of,
    resolve_backends,
)
from modelloop.config import ProjectConfig, load_config
from modelloop.errors import DataError, ModelloopError, UsageError
from modelloop.monitoring.pipeline import MonitoringResult, run_monitoring, write_report
from modelloop.monitoring.profiles import ProfileCache
from modelloop.orchestration import (
    Ledger,
    Origin,
    RunRecord,
    RunRequest,
    RunStatus,
    Skipped,
    TriggerKind,
    apply_alerts,
    describe_run,
    judge_trigger,
)
from modelloop.orchestration.alerts import acknowledge, describe_alert
from modelloop.orchestration.policy import new_rows_since, record_manual, retraining_reasons
from modelloop.orchestration.webhooks import deliver_pending
from modelloop.registry import STATUS_TAG, ModelVersion, Registry, VersionStatus
from modelloop.store import LogStore, MetadataDB
from modelloop.timeutil import to_naive

if TYPE_CHECKING:
    import pandas as pd

    from modelloop.data import Contract, DataSource
    from modelloop.doctor import Check
    from modelloop.engines import Progress, ScoreSummary
    from modelloop.gate import GateDecision, Rollback
    from modelloop.gate.modeltests import ModelTestRun
    from modelloop.home import Move
    from modelloop.serving.holder import ServedModel
    from modelloop.store.s3 import S3Location
    from modelloop.training import TrainingResult

DEFAULT_HOME = ".modelloop"
#: On a registered version: the ledger run that trained it (so a dead run's candidate is found).
LEDGER_RUN_TAG = "modelloop.ledger_run"
#: How long `monitor` sends due alert webhooks after its run: a dead receiver costs at most this.
WEBHOOK_FLUSH_SECONDS = 3.0


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
    #: Set by `open_project` when the home was opened at a new place and rebased onto it.
    moved: Move | None = None

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
        backends: Backends | None = None,
    ) -> None:
        self.config = config
        self._backends = backends
        self.project_dir = project_dir
        self.home = home
        self.registry = registry
        self.db = db
        self.logs = logs
        self._shadow_logs = shadow_logs
        self._given_source = source
        self.ledger = Ledger(
            db, ttl=config.leases.ttl.total_seconds(), on_failed=self._on_dead_run
        )

    @property
    def name(self) -> str:
        return self.config.name

    @cached_property
    def source(self) -> DataSource:
        """The project's data, opened on first use: monitoring reads the log, never the source,
        and need not pay for pandas."""
        from modelloop.data import ProjectSource, open_source

        data = self.config.data
        raw = self._given_source or open_source(data.source, self.project_dir, data.timestamp)
        return ProjectSource(raw, data, self.config.task)

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

    @property
    def reports_copy(self) -> S3Location | None:
        """Where reports are copied on object storage (`$MODELLOOP_STORAGE/reports/<name>`)."""
        logs = self._backends.logs if self._backends is not None else None
        if logs is None or logs.kind is not BackendKind.S3:
            return None
        from modelloop.store.s3 import S3Location

        return S3Location(logs.url).child("reports", self.name)

    def backend_list(self) -> list[Backend]:
        """The backends in use, in the order status and doctor show them; a Project wired with
        in-process backends (no `backends=`) names them `memory`, its metadata DB by its URL."""
        found = self._backends
        if found is None:
            memory = BackendKind.MEMORY
            found = Backends(
                tracking=Backend("tracking", memory, type(self.registry).__name__, "given"),
                artifacts=Backend("artifacts", memory, type(self.registry).__name__, "given"),
                metadata=Backend("metadata", kind_of(self.db.url), self.db.url, "given"),
                logs=Backend("logs", memory, type(self.logs).__name__, "given"),
            )
        return [*found.all(), data_backend(self.config.data.source, self.project_dir)]

    def backends(self) -> dict[str, dict[str, str]]:
        """Each backend by role (tracking, artifacts, metadata, logs, data): its kind, its
        location with any password masked, and where the setting came from."""
        return {backend.role: backend.to_dict() for backend in self.backend_list()}

    def doctor(self) -> list[Check]:
        """Check each backend is reachable and writable (harmlessly; see `modelloop.doctor`)."""
        from modelloop.doctor import diagnose

        return diagnose(self.backend_list(), experiment=self.name, db=self.db,
                        read_data=lambda: self.source.load(None, None),
                        timestamp=self.config.data.timestamp)

    # -- state ------------------------------------------------------------------------------
    def contract(self) -> Contract | None:
        from modelloop.data import Contract

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

    @property
    def profiles(self) -> ProfileCache:
        """Reference profiles by version under the state folder: monitoring reads a local file,
        never the registry; a version trained before the cache existed is read once from it."""
        return ProfileCache(
            self.home / "profiles" / self.name,
            lambda version: self.registry.read_json(self.name, version, "profile.json"),
        )

    def _reference_profile(self) -> dict[str, Any] | None:
        champion = self.champion()
        return None if champion is None else dict(self.profiles(champion.version))

    def latest_data_time(self) -> datetime:
        latest = self.source.latest_timestamp()
        if latest is None:
            raise DataError(f"data.source {self.config.data.source!r} holds no rows")
        return to_naive(latest)

    # -- pipelines ----------------------------------------------------------------------------
    def train(
        self,
        *,
        as_of: datetime | None = None,
        gate: bool = True,
        request: RunRequest | None = None,
    ) -> tuple[TrainingResult, GateDecision | None]:
        """Train a candidate at `as_of` (default: the latest timestamp in the data), then gate it;
        recorded in the run ledger, one training at a time across processes."""
        from modelloop.gate.modeltests import load_model_tests

        request = request or RunRequest()
        if gate:
            load_model_tests(self.project_dir)  # a malformed test file fails now, not in the gate
        self._check_artifact_bucket()
        as_of = as_of or self.latest_data_time()
        with self.ledger.run("train", request, as_of=as_of, params={"gate": gate}) as run:
            result, decision = self._train(as_of, request, gate, run)
        return result, decision

    def _check_artifact_bucket(self) -> None:
        """An artifact root on S3 whose bucket is missing or unreachable is named now: MLflow's
        upload would fail only after training, with boto3's traceback."""
        artifacts = self._backends.artifacts if self._backends is not None else None
        if artifacts is not None and artifacts.kind is BackendKind.S3:
            import importlib.util

            from modelloop.store.s3 import S3Location

            if importlib.util.find_spec("boto3") is None:
                raise ModelloopError(
                    f"MLflow's artifacts go to {artifacts.location}, which needs boto3: "
                    "pip install 'modelloop[s3]'"
                )
            S3Location(artifacts.url).check_bucket()

    def _train(
        self, as_of: datetime, request: RunRequest, gate: bool, run: RunRecord
    ) -> tuple[TrainingResult, GateDecision | None]:
        from modelloop.training import train

        contract = self.contract()
        if contract is not None and not self._contract_fits(contract):
            contract = None  # the project file's features changed: infer a contract anew
        try:
            result = train(
                self.config,
                source=self.source,
                registry=self.registry,
                contract=contract,
                as_of=as_of,
                trigger=request.trigger,
                project_dir=self.project_dir,
                reference_profile=self._reference_profile(),
                extra_tags={LEDGER_RUN_TAG: str(run.id)},
            )
        except DataError as exc:
            if exc.report:
                self._write_report(f"validation-{as_of:%Y%m%dT%H%M%S}.json", exc.report)
            raise
        run.produced.update(
            {"version": result.version.version, "score": result.score, "rows": result.rows}
        )
        self.profiles.put(result.version.version, result.profile)
        try:
            if result.contract != self.contract():
                self.db.set_state("contract", result.contract.to_dict())
            if request.origin not in (Origin.TRIGGER, Origin.RETRY):
                record_manual(self.db, as_of)  # counts for the retraining cooldown
            decision = self.gate(result.version.version) if gate else None
        except BaseException as exc:
            self._fail_candidate(result.version.version, run.id, exc)
            raise
        run.produced["decision"] = decision.outcome if decision else None
        return result, decision

    def _fail_candidate(self, version: int, run_id: int, why: BaseException | str) -> None:
        """A candidate whose run did not finish: tagged failed, never gated, not the challenger."""
        text = why if isinstance(why, str) else (str(why) or type(why).__name__)
        self.registry.set_tags(
            self.name,
            version,
            {
                STATUS_TAG: VersionStatus.FAILED,
                "modelloop.failed_reason": f"ledger run {run_id}: {text}"[:4900],
            },
        )
        challenger = self.challenger()
        if challenger is not None and challenger.version == version:
            self.registry.delete_alias(self.name, "challenger")

    def _on_dead_run(self, run: dict[str, Any]) -> None:
        """The ledger found a run whose process died: a candidate it registered is failed."""
        if run["kind"] != "train":
            return
        for version in self.registry.versions(self.name):
            mine = version.tags.get(LEDGER_RUN_TAG) == str(run["id"])
            if mine and version.status == VersionStatus.CANDIDATE:
                self._fail_candidate(version.version, int(run["id"]), str(run["error"]))

    def gate(self, version: int, *, force: tuple[str, str] | None = None) -> GateDecision:
        """Gate `version` (one gate, approval or rollback at a time across processes).
        `force=(by, reason)` promotes it even if it fails, recorded as forced."""
        from modelloop.gate import run_gate
        from modelloop.gate.history import reconcile
        from modelloop.gate.modeltests import load_model_tests

        found = self.registry.get_version(self.name, version)  # NotFound names the version
        if found.status == VersionStatus.FAILED:
            raise ModelloopError(
                f"version {version} is tagged failed ({found.tags.get('modelloop.failed_reason')}): "
                "the run that trained it did not finish, so it is never gated; train again"
            )
        if found.tags.get("modelloop.refit_of"):
            raise ModelloopError(
                f"version {version} is the refit of version {found.tags['modelloop.refit_of']} "
                "(trained on its holdout too, so no holdout is left to judge it): gate that one"
            )
        contract = self.contract()
        if contract is None:
            raise ModelloopError("no data contract yet: run `modelloop train` first")
        with self.ledger.hold("promotion"):
            reconcile(self.registry, self.db, self.name)  # a move made outside modelloop, first
            return run_gate(
                self.config,
                version=version,
                source=self.source,
                registry=self.registry,
                contract=contract,
                db=self.db,
                logs=self.logs,
                refit=self._refit,
                force=force,
                model_tests=load_model_tests(self.project_dir),
            )

    def approve(self, version: int, *, reason: str, by: str | None = None) -> GateDecision:
        """A person approves a version that passed the gate and waits (gate.approval: manual)."""
        from modelloop.gate import approve
        from modelloop.gate.history import reconcile

        contract = self.contract()
        if contract is None:
            raise ModelloopError("no data contract yet: run `modelloop train` first")
        with self.ledger.hold("promotion"):
            reconcile(self.registry, self.db, self.name)
            return approve(
                self.config,
                version=version,
                by=by or who(),
                reason=reason,
                registry=self.registry,
                db=self.db,
                source=self.source,
                contract=contract,
                refit=self._refit,
            )

    def reject(self, version: int, *, reason: str, by: str | None = None) -> GateDecision:
        """A person rejects a version waiting for approval (or not yet gated)."""
        from modelloop.gate import reject

        with self.ledger.hold("promotion"):
            return reject(
                self.config, version=version, by=by or who(), reason=reason,
                registry=self.registry, db=self.db,
            )

    def test_models(self, version: int | None = None) -> ModelTestRun:
        """The project's model tests (`tests/model/*.yaml`) against `version` (default: the
        challenger, else the champion)."""
        from modelloop.gate.modeltests import run_version_tests

        return run_version_tests(self.registry, self.name, version, project_dir=self.project_dir,
                                 contract=self.contract(), source=self.source)

    def _refit(self, version: int) -> int:
        """`version` refit on its training window plus its holdout (training.refit), registered
        with `modelloop.refit_of`; the gate checks it again before it serves."""
        from modelloop.data import refit_windows
        from modelloop.training import train

        windows = refit_windows(self.registry.get_version(self.name, version).tags)
        contract = self.contract()
        result = train(
            self.config,
            source=self.source,
            registry=self.registry,
            contract=contract,
            as_of=windows.as_of,
            trigger=f"refit of version {version} after the gate",
            project_dir=self.project_dir,
            reference_profile=self._reference_profile(),
            extra_tags={"modelloop.refit_of": str(version)},
            windows=windows,
        )
        self.profiles.put(result.version.version, result.profile)
        challenger = self.challenger()
        if challenger is not None and challenger.version == result.version.version:
            self.registry.delete_alias(self.name, "challenger")
        return result.version.version

    def monitor(
        self,
        *,
        as_of: datetime | None = None,
        retrain: bool = True,
        request: RunRequest | None = None,
    ) -> MonitorOutcome:
        """Check a window of the prediction log; a breach opens an alert (one per kind and subject
        while it lasts) and, past the cooldown, fires a retraining that trains a candidate and
        gates it. Webhooks of the alerts it opened or resolved are sent for a few seconds after
        the run is recorded; what a slow receiver does not take is retried later."""
        request = request or RunRequest()
        as_of = as_of or self.logs.latest_prediction_time()
        if as_of is None:
            raise ModelloopError(
                "the prediction log is empty: serve some predictions first "
                "(modelloop serve, then POST /invocations)"
            )
        as_of = to_naive(as_of)
        with self.ledger.run("monitor", request, as_of=as_of, params={"retrain": retrain}) as run:
            result = run_monitoring(
                self.config,
                logs=self.logs,
                registry=self.registry,
                profiles=self.profiles,
                as_of=as_of,
                reports_dir=self.reports_dir,
                not_nullable=self._not_nullable(),
                write=False,
            )
            history = self.db.monitoring_history(limit=52)
            self.db.record_monitoring(result.to_dict(), as_of=as_of)
            changes = apply_alerts(self.db, result, self.config.alerts)
            outcome = MonitorOutcome(result=result, alerts=changes.ids)
            run.produced.update(
                {
                    "report": str(result.report_html),
                    "rows": result.n_rows,
                    "labelled": result.n_labelled,
                    "metric": result.metric_value,
                    "breaches": [str(kind) for kind in result.breach_kinds],
                    "alerts_opened": changes.opened,
                    "alerts_resolved": changes.resolved,
                }
            )
            reasons = retraining_reasons(self.config, result)
            if reasons:
                kinds = [kind for kind, _why in reasons]
                whys = "; ".join(why for _kind, why in reasons)
                reason = f"monitoring alert at {as_of.isoformat()}: {whys}"
                outcome.trigger = self._retrain(kinds, reason, as_of, retrain, outcome)
                run.produced["trigger"] = outcome.trigger
            # Written last, so the report says what the run led to: alerts, retraining, decision.
            write_report(result, self.config, self.reports_dir, copy_to=self.reports_copy, extra={
                "alerts": {"opened": changes.opened, "still_open": changes.still_open,
                           "resolved": changes.resolved},
                "trigger": outcome.trigger,
                "history": _history_points(history, result),
            })
            run.produced["report"] = str(result.report_html)
            if result.report_url:
                run.produced["report_url"] = result.report_url
        if self.config.alerts.webhooks:
            deliver_pending(self.db, self.config.alerts, budget_seconds=WEBHOOK_FLUSH_SECONDS)
        return outcome

    # -- alerts -----------------------------------------------------------------------------------
    def alerts(
        self,
        *,
        status: Sequence[str] | None = ("open", "acknowledged"),
        kind: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Alerts newest first: by default those still standing (open or acknowledged); `status`
        None for all."""
        rows = self.db.alerts(kind, limit=limit, status=None if status is None else list(status))
        return [describe_alert(row) for row in rows]

    def ack_alert(self, alert_id: int, *, reason: str, by: str | None = None) -> dict[str, Any]:
        """A person takes an open alert on: it stays unresolved but is not announced again."""
        return describe_alert(acknowledge(self.db, alert_id, by=by or who(), reason=reason))

    def deliver_alerts(self, budget_seconds: float = 30.0) -> dict[str, int]:
        """Send the alert webhooks that are due now (`modelloop alerts deliver`)."""
        return deliver_pending(self.db, self.config.alerts, budget_seconds=budget_seconds).to_dict()

    def _not_nullable(self) -> list[str]:
        """Features the data contract forbids to be missing; read from its stored form, as
        `Contract.to_dict` writes it (the Contract class brings pandera and pandas along)."""
        raw = self.db.get_state("contract") or {}
        return [
            str(rule["name"]) for rule in raw.get("columns", [])
            if not rule.get("nullable", True) and rule.get("role") in ("numeric", "categorical")
        ]

    def _retrain(
        self,
        kinds: list[TriggerKind],
        reason: str,
        as_of: datetime,
        allowed: bool,
        outcome: MonitorOutcome | None = None,
    ) -> dict[str, Any]:
        """Judge an automatic retraining condition and, when it fires, train and gate."""
        trigger = judge_trigger(
            self.db,
            self.config,
            kinds=kinds,
            reason=reason,
            as_of=as_of,
            allowed=allowed,
            held_reason="--no-retrain",
        )
        out = trigger.to_dict()
        if not trigger.fired:
            return out
        try:
            # Keyed by the condition: two processes judging it at once still train once.
            key = f"trigger {'+'.join(sorted(map(str, kinds)))} {as_of.isoformat()}"
            training, decision = self.train(
                as_of=as_of, request=RunRequest(origin=Origin.TRIGGER, trigger=reason, key=key)
            )
        except Skipped as exc:
            out["training"] = str(exc)
            return out
        if outcome is not None:
            outcome.training, outcome.decision = training, decision
        out["version"] = training.version.version
        out["decision"] = decision.outcome if decision else None
        return out

    def last_trained_as_of(self) -> datetime | None:
        """The as-of of the newest training that succeeded (the ledger), else the champion's."""
        for run in self.db.runs(limit=50, pipeline="train", status=RunStatus.SUCCEEDED):
            if run["as_of"]:
                return datetime.fromisoformat(str(run["as_of"]))
        champion = self.champion()
        tagged = champion.tags.get("modelloop.as_of") if champion else None
        return datetime.fromisoformat(tagged) if tagged else None

    def check_new_data(self) -> dict[str, Any] | None:
        """The new-data trigger (`retraining.min_new_rows`): rows newer than the last training's
        as-of; when there are enough and the cooldown allows, train and gate. None when the
        trigger is off or the condition does not hold."""
        if self.config.retraining.min_new_rows is None:
            return None
        last = self.last_trained_as_of()
        latest = self.source.latest_timestamp()
        latest = to_naive(latest) if latest is not None else None
        if latest is None or (last is not None and latest <= last):
            return None
        count = len(self.source.load(last, None))
        condition = new_rows_since(self.config, last, latest, count)
        if condition is None:
            return None
        return self._retrain(condition.kinds, condition.reason, latest, True)

    def run_pipeline(
        self, pipeline: str, request: RunRequest, *, as_of: datetime | None = None
    ) -> dict[str, Any]:
        """Run `pipeline` for a schedule, the API or a retry; returns what it produced. A run that
        finds nothing new to do is recorded and succeeds, saying so."""
        if pipeline == "monitor":
            if as_of is None and self.logs.latest_prediction_time() is None:
                with self.ledger.run("monitor", request) as run:
                    run.note = "the prediction log is empty: nothing to monitor yet"
                return {"note": run.note}
            outcome = self.monitor(as_of=as_of, request=request)
            return outcome.result.to_dict() | {"trigger": outcome.trigger}
        if pipeline == "train":
            as_of = as_of or self.latest_data_time()
            last = self.last_trained_as_of()
            if request.origin is Origin.SCHEDULE and last is not None and as_of <= last:
                with self.ledger.run("train", request, as_of=as_of) as run:
                    run.note = f"no data newer than the last training's as-of ({last.isoformat()})"
                return {"note": run.note}
            result, decision = self.train(as_of=as_of, request=request)
            return {"version": result.version.version, "decision": decision.outcome if decision else None}
        if pipeline == "score":
            return self.score(request=request).to_dict()
        raise UsageError(f"unknown pipeline {pipeline!r}: expected train, monitor or score")

    def runs(self, *, pipeline: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The run ledger, newest first: runs whose process died are marked failed first."""
        self.ledger.reap()
        return [describe_run(row) for row in self.db.runs(limit=limit, pipeline=pipeline)]

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
        import pandas as pd

        data = self.config.data
        return self.logs.append_labels(pd.DataFrame({data.id_column: list(ids), data.target: list(targets)}))

    def ingest_labels(self, frame: pd.DataFrame) -> tuple[int, int]:
        """Store ground truth: (stored, skipped); see `modelloop.data.labels.prepare_labels`."""
        from modelloop.data import prepare_labels

        kept, skipped = prepare_labels(frame, self.config.data, self.config.task)
        stored = self.logs.append_labels(kept) if len(kept) else 0
        return stored, skipped

    def ingest_labels_file(self, path: Path) -> tuple[int, int]:
        """Store ground truth from a CSV or Parquet file, naming the file in any error."""
        from modelloop.data import read_label_file

        frame = read_label_file(path)
        try:
            return self.ingest_labels(frame)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        from modelloop.home import last_move
        from modelloop.serving.presence import running_servers

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
            "moved": last_move(self.home),
            "metric": self.config.evaluation.metric,
            "champion": describe(self.champion()),
            "challenger": describe(self.challenger()),
            "previous": describe(self.registry.alias(self.name, "previous")),
            "last_decision": decisions[0] if decisions else None,
            "last_monitoring": self.db.last_monitoring(),
            "open_alerts": self.db.open_alerts(),
            "alert_counts": self.db.alert_counts(),
            "servers": running_servers(self.home, self.name),
            "last_runs": self._last_runs(),
            "delivery": self.delivery(),
            "backends": self.backends(),
        }

    def _last_runs(self) -> dict[str, dict[str, Any]]:
        """Each pipeline's latest run (the ledger): status, when, started by whom."""
        latest: dict[str, dict[str, Any]] = {}
        for run in self.runs(limit=200):
            if run["pipeline"] not in latest:
                keep = ("id", "status", "origin", "trigger", "started_at", "finished_at", "error")
                latest[run["pipeline"]] = {k: run[k] for k in keep}
        return latest

    def rollback(self, *, reason: str, by: str | None = None, to: int | None = None,
                 expected_champion: int | None = None,
                 evidence: dict[str, Any] | None = None) -> Rollback:
        """Make the previous champion (or version `to`) the champion again, with the reason kept
        (every server following the alias swaps within `serving.reload_interval`)."""
        from modelloop.gate import rollback
        from modelloop.gate.history import reconcile

        with self.ledger.hold("promotion"):
            reconcile(self.registry, self.db, self.name)
            return rollback(self.registry, self.db, self.name, reason=reason, by=by or who(), to=to,
                            expected_champion=expected_champion, evidence=evidence)

    def history(self, limit: int = 200, *, reconcile: bool = True) -> list[dict[str, Any]]:
        """Every gate decision, approval, rejection, rollback and move of the champion made
        outside modelloop, newest first (see `modelloop.gate.history.events`). `reconcile=False`
        reads what is recorded without taking the promotion lock (the dashboard: a page must not
        wait for a gate that is running)."""
        from modelloop.gate import history

        if reconcile:
            with self.ledger.hold("promotion"):
                history.reconcile(self.registry, self.db, self.name)
        return history.events(self.db, limit)

    def delivery(self) -> dict[str, Any]:
        """The delivery metrics over all history, now (see `modelloop.gate.delivery`)."""
        from modelloop.gate.delivery import delivery_metrics

        return delivery_metrics(self.db, now=datetime.now(UTC))

    def monitoring_history(self, limit: int = 104) -> list[dict[str, Any]]:
        """The latest `limit` monitoring runs, oldest first: `{id, as_of, result, created_at}`."""
        return self.db.monitoring_history(limit=limit)

    # -- batch scoring ----------------------------------------------------------------------------
    def score(
        self,
        input: Path | None = None,
        output: Path | None = None,
        *,
        version: int | None = None,
        engine: str = "local",
        master: str | None = None,
        chunk_rows: int = 100_000,
        progress: Progress | None = None,
        request: RunRequest | None = None,
    ) -> ScoreSummary:
        """Score a CSV or Parquet file with `version` (default: the champion) through the server's
        own `predict`, so a batch and a request get the same numbers; recorded as a `score` run.
        `engine` is `local` or `spark` (on `master`: see `modelloop.spark.master_of`).

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
        runner = get_engine(engine, master=master)
        # The user's own mistakes first, before the model is loaded (seconds) for nothing.
        file_format(source, "input")
        file_format(target, "output")
        if not source.is_file():
            raise DataError(f"{source}: no such file" if not source.exists() else f"{source}: not a file")
        served = self.load_served_model(version)
        params = {"input": str(source), "output": str(target), "version": served.version, "engine": engine}
        if engine == "spark":
            from modelloop.spark import master_of

            params["master"] = master_of(master)
        with self.ledger.run("score", request or RunRequest(), params=params) as run:
            summary = runner.score(source, target, model=served, chunk_rows=chunk_rows, progress=progress)
            run.produced.update(summary.to_dict())
        return summary

    def _write_report(self, name: str, payload: dict[str, Any]) -> Path:
        import json

        self.reports_dir.mkdir(parents=True, exist_ok=True)
        path = self.reports_dir / name
        path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        copy = self.reports_copy
        if copy is not None:
            copy.put_file(path, name)
        return path


def _history_points(history: list[dict[str, Any]], result: MonitoringResult) -> list[dict[str, Any]]:
    """Earlier monitoring runs and this one, one point per as-of (the latest run of it), oldest
    first: what the report plots over time."""
    points: dict[str, dict[str, Any]] = {}
    for row in [*history, {"result": result.to_dict()}]:
        found = row.get("result") or {}
        if not isinstance(found, dict) or "as_of" not in found:
            continue
        metric = found.get("metric") or {}
        estimated = metric.get("estimated") or {}
        drift = found.get("drift") or {}
        points[str(found["as_of"])] = {
            "as_of": found["as_of"],
            "metric": metric.get("value"),
            "estimated": estimated.get("value"),
            "n_labelled": found.get("n_labelled"),
            "coverage": (found.get("coverage") or {}).get("share"),
            "drifted": drift.get("drifted", []),
            "report": found.get("report_html"),
        }
    return [points[key] for key in sorted(points) if key <= result.as_of.isoformat()]


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
    backends = resolve_backends(home_dir)
    move = _settle_home(home_dir, config.name, backends)
    registry = MlflowRegistry(
        backends.tracking.url, artifact_root=backends.artifact_root, experiment=config.name
    )
    db = MetadataDB(backends.metadata.url, model=config.name)
    storage = backends.logs.url

    def log_store(kind: str) -> ParquetLogStore:
        data = config.data
        if backends.logs.kind is BackendKind.S3:
            from modelloop.store.s3 import S3LogStore, local_cache

            # The write-ahead log and a read cache stay on local disk, in the home.
            return S3LogStore(
                storage, local_cache(home_dir, storage), config.name, id_column=data.id_column,
                timestamp_column=data.timestamp, target_column=data.target,
                flush_interval=config.serving.log_flush, kind=kind,
            )
        return ParquetLogStore(
            storage, config.name, id_column=data.id_column, timestamp_column=data.timestamp,
            target_column=data.target, flush_interval=config.serving.log_flush, kind=kind,
        )

    project = Project(
        config,
        project_dir=path.parent,
        home=home_dir,
        registry=registry,
        db=db,
        logs=log_store("predictions"),
        shadow_logs=lambda: log_store("shadow"),
        backends=backends,
    )
    project.moved = move
    return project


def _settle_home(home_dir: Path, name: str, backends: Backends) -> Move | None:
    """Rebase the embedded stores of a home copied or moved here (see `modelloop.home`); a
    tracking URI or database URL the user set names a store elsewhere and is left alone."""
    from modelloop.home import settle_home

    def embedded(backend: Backend, file: str) -> Path | None:
        return home_dir / file if backend.origin == "default" else None

    return settle_home(
        home_dir,
        experiment=name,
        tracking_db=embedded(backends.tracking, "mlflow.db"),
        metadata_db=embedded(backends.metadata, "modelloop.db"),
        servers=home_dir / "servers",
    )
