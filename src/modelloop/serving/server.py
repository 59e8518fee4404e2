"""Running the app: uvicorn with httptools (and uvloop where it exists), header limits, and a
graceful stop.

uvicorn's httptools protocol puts no bound on the size of a request's headers; ours answers a
431 (in JSON, like every other error) past `MAX_HEADER_BYTES`, and its protocol-level 400s are
JSON too. SIGTERM (or Ctrl-C) stops accepting, lets the requests in flight finish, then the app's
shutdown scores whatever is queued and moves the write-ahead log to Parquet; the process exits 0.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("modelloop.serving")

#: The request line plus every header; browsers send 1-4 KB, proxies cap near 8-16 KB.
MAX_HEADER_BYTES = 64 * 1024
#: How long a stop waits for requests in flight before closing them.
GRACEFUL_SECONDS = 20


class _HeadersTooLarge(Exception):
    pass


def _protocol_class() -> type[Any]:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with a bound on header bytes and JSON protocol errors."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._too_large = False

        def _count(self, size: int) -> None:
            self._header_bytes = getattr(self, "_header_bytes", 0) + size
            if self._header_bytes > MAX_HEADER_BYTES:
                self._too_large = True
                raise _HeadersTooLarge()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            too_large = getattr(self, "_too_large", False)
            status = 431 if too_large else 400
            body = json.dumps(
                {
                    "error_code": "HEADERS_TOO_LARGE" if too_large else "BAD_REQUEST",
                    "problem": "headers_too_large" if too_large else "malformed_http",
                    "message": (
                        f"the request line and headers exceed {MAX_HEADER_BYTES:,} bytes"
                        if too_large
                        else msg
                    ),
                }
            ).encode()
            line = STATUS_LINE.get(status) or b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            self.transport.write(
                b"".join(
                    [
                        line,
                        b"content-type: application/json\r\n",
                        b"content-length: " + str(len(body)).encode() + b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
            self.transport.close()

    return LimitedHttpToolsProtocol


def server_config(app: Any, *, host: str, port: int, log_level: str = "warning") -> Any:
    """The uvicorn configuration every modelloop server uses (the CLI's, the demo's, the tests')."""
    import uvicorn

    try:
        import uvloop  # noqa: F401  (fastest loop where it is installed: not on Windows)

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_protocol_class(),
        loop=loop,
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        server_header=False,
    )


def run_server(app: Any, *, host: str, port: int) -> None:
    """Serve until SIGTERM or Ctrl-C; raises a ModelloopError if the address cannot be bound."""
    import signal

    import uvicorn

    from modelloop.errors import ModelloopError

    server = uvicorn.Server(server_config(app, host=host, port=port))
    # uvicorn stops gracefully on SIGTERM, then raises the signal again for the handler that was
    # there before it: a quiet one, so a clean stop exits 0 rather than dying of the signal.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise ModelloopError(f"could not serve on {host}:{port} (is the port in use? see the log above)")
