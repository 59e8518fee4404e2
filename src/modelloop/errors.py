"""Errors a user can act on. The CLI prints their message and exits; it never shows a traceback."""

from __future__ import annotations


def shown(value: object) -> str:
    """A user's value as a message shows it: `2`, `'late'`, `nan`, never `np.int64(2)`."""
    item = getattr(value, "item", None)  # numpy scalars turn into the Python value they hold
    if callable(item) and type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        value = item()
    return repr(value)


class ModelloopError(Exception):
    """Base of every error that is the user's to fix (a file, a field, a column, a request)."""

    exit_code = 1


class ConfigError(ModelloopError):
    """The project file is missing, unreadable, or a field holds the wrong thing."""

    exit_code = 2


class UsageError(ModelloopError):
    """A command-line argument or option is wrong (exit 2, the CLI library's convention)."""

    exit_code = 2


class DataError(ModelloopError):
    """The data could not be loaded, or it breaks the data contract."""

    def __init__(self, message: str, report: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


class BadRequest(ModelloopError):
    """A scoring or label request the server must answer with a 400."""

    def __init__(
        self, message: str, *, column: str | None = None, problem: str = "bad_request", status: int = 400
    ) -> None:
        super().__init__(message)
        self.column = column
        self.problem = problem
        self.status = status

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "error_code": "BAD_REQUEST",
            "problem": self.problem,
            "message": str(self),
        }
        if self.column is not None:
            body["column"] = self.column
        return body


class NotFound(ModelloopError):
    """A model version, alias or record the user named does not exist."""


class BackendError(ModelloopError):
    """A backend (the model registry, the store) failed: an outage, not an absence.

    Kept apart from `NotFound` so that nothing decides "there is no champion" when the truth is
    "the registry did not answer".
    """
