"""Files modelloop writes for people and other tools (a project file, a workflow, a DAG)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from modelloop.errors import ModelloopError


def write_atomically(path: Path, text: str, *, what: str) -> Path:
    """Write `text` to `path` whole or not at all (a temporary file beside it, fsynced, renamed
    over it), readable as any new file under the umask: another user (Airflow's, CI's) may
    read it. The temporary name ends in `.tmp`, so no tool reading `*.py` or `*.yml` sees it
    half written. An OSError becomes a ModelloopError naming the file and `what` it is."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would hide it
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ModelloopError(f"{path}: cannot write {what}: {exc}") from None
    return path
