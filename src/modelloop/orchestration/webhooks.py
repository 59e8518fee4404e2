"""Webhooks: tell a receiver (a Slack incoming webhook, your own service) that an alert opened or
resolved. Acknowledging an alert sends nothing.

Delivery goes through an outbox (`modelloop_alert_deliveries`): a pipeline only inserts a row
per event and receiver (`enqueue`), and `deliver_pending` sends the rows that are due, within a
time budget, so a slow or dead receiver never holds up a pipeline. A failed attempt (a network
error, no answer within `alerts.timeout`, a status other than 2xx) is tried again after
`alerts.backoff`, then twice as long each time; after `alerts.max_attempts` the row is `failed`
and kept with its last error. Who sends: `modelloop up` on every upkeep tick (in a thread of its
own), the CLI for a few seconds after `modelloop monitor`, and `modelloop alerts deliver`. Two
deliverers never send one row at once: each attempt is claimed first (compare-and-set).

Bodies (`Content-Type: application/json`):

- format `json`: ``{"event": "alert.opened" | "alert.resolved", "model": ..., "alert": {"id",
  "kind", "subject", "status", "as_of", "message", "report"}}`` (a resolved alert also carries
  `resolved_as_of`).
- format `slack`: ``{"text": "<one line: model, kind, subject, message>"}``.

Signing. When the webhook has a `secret` (or `secret_env`, the environment variable read at
send time), every request carries two headers::

    X-Modelloop-Timestamp: <unix seconds when it was sent>
    X-Modelloop-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

where `body` is the raw request body, byte for byte. A receiver recomputes the HMAC over the
timestamp header, a dot and the body it got, compares in constant time, and refuses a timestamp
too far from its clock (a replayed request): `verify_signature` does all three.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from modelloop.config import AlertsConfig, Webhook
from modelloop.store import MetadataDB

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("modelloop.orchestration")

TIMESTAMP_HEADER = "X-Modelloop-Timestamp"
SIGNATURE_HEADER = "X-Modelloop-Signature"

#: Below this much budget left, an attempt is not started (it could not finish in time).
_MIN_ATTEMPT_SECONDS = 0.05
#: How long past its timeout a claimed attempt holds its row: a deliverer that died mid-send
#: leaves the row to be tried again after this.
_CLAIM_MARGIN = timedelta(seconds=30)


class AlertEvent(StrEnum):
    OPENED = "alert.opened"
    RESOLVED = "alert.resolved"


def render(model: str, event: AlertEvent, alert: Mapping[str, Any], fmt: str) -> str:
    """The body sent for `event` about `alert` (a row of `MetadataDB.alerts`), in `fmt`."""
    detail = alert.get("detail") or {}
    message = str(detail.get("message") or "")
    if fmt == "slack":
        what = f"{alert['kind']} alert" + (f" on {alert['subject']}" if alert.get("subject") else "")
        verb = "resolved" if event is AlertEvent.RESOLVED else "opened"
        line = f"[{model}] {what} {verb} (#{alert['id']}, as of {alert['as_of']}): {message}"
        return json.dumps({"text": " ".join(line.split())})
    body: dict[str, Any] = {
        "id": alert["id"],
        "kind": alert["kind"],
        "subject": alert.get("subject") or "",
        "status": alert["status"],
        "as_of": alert["as_of"],
        "message": message,
        "report": detail.get("report"),
    }
    if event is AlertEvent.RESOLVED:
        body["resolved_as_of"] = alert.get("resolved_as_of")
    return json.dumps({"event": str(event), "model": model, "alert": body})


def enqueue(
    db: MetadataDB, config: AlertsConfig, event: AlertEvent, alert: Mapping[str, Any]
) -> list[int]:
    """Queue `event` for every configured receiver; nothing is sent here."""
    return [
        db.enqueue_delivery(
            int(alert["id"]),
            event=str(event),
            url=hook.url,
            payload=render(db.model, event, alert, hook.format),
        )
        for hook in config.webhooks
    ]


def sign(secret: str, timestamp: str, body: str | bytes) -> str:
    """The `X-Modelloop-Signature` value of `body` sent at `timestamp` (unix seconds, as text)."""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: str | bytes,
    header: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """For a receiver: whether `header` (X-Modelloop-Signature) signs `body` at `timestamp`
    (X-Modelloop-Timestamp) with `secret`, and the timestamp is within `tolerance` seconds of
    `now` (default: this machine's clock)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header.strip())


@dataclass
class DeliveryReport:
    """What one pass of `deliver_pending` did."""

    delivered: int = 0
    #: Attempts that failed with attempts left: pending again, later.
    retrying: int = 0
    #: Attempts that failed with none left.
    failed: int = 0
    #: Due, but not tried in this pass: the time budget ran out.
    left: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def deliver_pending(
    db: MetadataDB,
    config: AlertsConfig,
    *,
    budget_seconds: float,
    limit: int = 100,
    transport: httpx.BaseTransport | None = None,
) -> DeliveryReport:
    """Send the due deliveries, at most `limit` of them and for at most about `budget_seconds`
    (each request's timeout is cut to what is left). Never raises for a receiver's failure: it
    is recorded on the row and retried with backoff."""
    deadline = time.monotonic() + max(0.0, budget_seconds)
    report = DeliveryReport()
    due = db.due_deliveries(_utcnow(), limit=limit)
    if not due:
        return report
    import httpx

    hooks = {hook.url: hook for hook in config.webhooks}
    with httpx.Client(transport=transport, follow_redirects=False) as client:
        for row in due:
            left = deadline - time.monotonic()
            if left < _MIN_ATTEMPT_SECONDS:
                report.left += 1
                continue
            timeout = min(config.timeout.total_seconds(), left)
            now = _utcnow()
            attempts = int(row["attempts"])
            hold = now + timedelta(seconds=timeout) + _CLAIM_MARGIN
            if not db.claim_delivery(int(row["id"]), attempts=attempts, now=now, hold_until=hold):
                continue  # another deliverer took it
            error = _send(client, hooks.get(str(row["url"])), row, timeout)
            attempts += 1
            if error is None:
                db.finish_delivery(int(row["id"]), status="delivered", attempts=attempts)
                report.delivered += 1
            elif attempts >= config.max_attempts:
                db.finish_delivery(int(row["id"]), status="failed", attempts=attempts, error=error)
                report.failed += 1
                logger.warning(
                    "webhook %s: %s of alert %s not delivered after %d attempt(s): %s",
                    row["url"], row["event"], row["alert_id"], attempts, error,
                )
            else:
                wait = config.backoff * 2 ** (attempts - 1)
                db.finish_delivery(
                    int(row["id"]), status="pending", attempts=attempts,
                    next_attempt_at=_utcnow() + wait, error=error,
                )
                report.retrying += 1
    return report


def _send(
    client: httpx.Client, hook: Webhook | None, row: Mapping[str, Any], timeout: float
) -> str | None:
    """One attempt; the error in words, or None when the receiver took it (2xx)."""
    import httpx

    if hook is None:
        return "this URL is no longer in alerts.webhooks of the project file"
    body = str(row["payload"]).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "modelloop-webhooks"}
    if hook.secret is not None or hook.secret_env is not None:
        secret = _secret(hook)
        if secret is None:
            return f"alerts.webhooks: the environment variable {hook.secret_env} (secret_env) is not set"
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    try:
        response = client.post(str(row["url"]), content=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        return f"no answer within {timeout:.1f}s"
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}: {response.text[:200]}"


def _secret(hook: Webhook) -> str | None:
    if hook.secret is not None:
        return hook.secret.get_secret_value()
    return os.environ.get(hook.secret_env or "") or None


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
