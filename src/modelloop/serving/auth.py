"""Who may call what: a bearer token (`MODELLOOP_TOKEN`) on the routes that change state.

Labels steer monitoring and `/admin` moves the served version, so they need the token whenever
one is set; `serving.auth: all` extends it to scoring. The comparison takes the same time
whatever the token sent, so timing tells an attacker nothing.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

TOKEN_ENV = "MODELLOOP_TOKEN"

#: Routes that change what the server or monitoring believes, or run pipelines (`modelloop up`):
#: always behind the token.
_WRITES = ("/labels", "/admin/", "/pipelines")
#: Routes that score: behind the token with `serving.auth: all`.
_SCORING = ("/invocations",)


def token_from_env() -> str | None:
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def protected(path: str, mode: str) -> bool:
    """Whether `path` needs the token under `serving.auth` = `mode` ("writes" or "all")."""
    if path.startswith(_WRITES):
        return True
    if mode != "all":
        return False
    return path in _SCORING or (path.startswith("/v2/models/") and path.endswith("/infer"))


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>`."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def is_loopback(host: str) -> bool:
    """127.0.0.1, ::1 and localhost: only this machine can reach a server bound there."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
