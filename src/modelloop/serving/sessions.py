"""The dashboard's sign-in: the bearer token exchanged once for a signed session cookie, and a
CSRF token bound to that session in every form.

A browser cannot send `Authorization: Bearer` on a plain form post, and a token kept in a page
or in local storage is readable by any script that gets in. So `/ui/signin` takes the token
(and the person's name, recorded as `by` on every action) in a form, checks it in constant time,
and answers a cookie the page's scripts cannot read (HttpOnly), that no other site's page sends
(SameSite=Strict), only under `/ui`, and only over https when the server is reached that way.

The cookie is `<payload>.<signature>`: the payload (who, when it expires, a random session id)
in URL-safe base64 JSON, the signature an HMAC-SHA256 under a key drawn at random when the app
starts, so a restart signs everyone out and nothing secret is stored anywhere. Each form carries
`csrf`, an HMAC of the session id under the same key: a page on another origin can make the
browser post, but cannot read the token it would need. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "modelloop_session"
#: How long a sign-in lasts.
SESSION_SECONDS = 12 * 3600
#: The longest name recorded as `by`.
MAX_NAME = 80


@dataclass(frozen=True)
class Session:
    who: str
    expires: int
    sid: str


class Sessions:
    """Signs and checks session cookies and CSRF tokens with one key of this process's."""

    def __init__(self, key: bytes | None = None, *, lifetime: int = SESSION_SECONDS) -> None:
        self._key = key or secrets.token_bytes(32)
        self.lifetime = lifetime

    def _sign(self, data: bytes) -> str:
        digest = hmac.new(self._key, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, who: str, now: float | None = None) -> tuple[str, Session]:
        """A new session for `who`: the cookie's value, and the session it stands for."""
        session = Session(who=who, expires=int((now or time.time()) + self.lifetime),
                          sid=secrets.token_urlsafe(16))
        raw = json.dumps({"who": session.who, "exp": session.expires, "sid": session.sid},
                         separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return f"{payload}.{self._sign(payload.encode())}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie stands for; None when absent, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload.encode()).encode()):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(who=str(data["who"]), expires=int(data["exp"]), sid=str(data["sid"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= (now or time.time()):
            return None
        return session

    def csrf(self, session: Session) -> str:
        """The token every form of this session carries."""
        return self._sign(b"csrf:" + session.sid.encode())

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        """Whether a form's token is this session's, compared in constant time."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf(session).encode())


def cookie_header(value: str, *, secure: bool, max_age: int) -> str:
    """The Set-Cookie value: HttpOnly, SameSite=Strict, Path=/ui, Secure over https."""
    parts = [f"{COOKIE}={value}", "Path=/ui", "HttpOnly", "SameSite=Strict", f"Max-Age={max_age}"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clean_name(value: str) -> str:
    """A person's name as recorded: one line, trimmed, at most MAX_NAME characters."""
    return " ".join(value.split())[:MAX_NAME]
