"""The one Jinja2 environment every report is rendered with, and the filters that format numbers
for people.

jinja2 is imported, and templates compiled, on the first render, never at import: a monitoring
run that writes no report pays nothing. Compiling the templates costs far more than rendering
them (~60 ms against ~2 ms), so the compiled code is also kept across processes in Jinja2's own
bytecode cache (a 0700 folder of the user's in the temporary directory, checked against each
template's source and Jinja2's version); the environment keeps templates within a process.
"""

from __future__ import annotations

import contextlib
import math
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import BytecodeCache, Environment

TEMPLATES = Path(__file__).parent / "templates"


@cache
def environment() -> Environment:
    """Autoescape on for every template (all our output is HTML or SVG); missing values render
    as empty rather than failing, and the templates guard each optional section explicitly."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        auto_reload=False,  # the templates ship with the package; no stat() per render
        bytecode_cache=_bytecode_cache(),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        measure=measure, count=count, share=share, when=when, number=number, px=px, signed=signed
    )
    return env


def _bytecode_cache() -> BytecodeCache | None:
    """Jinja2's file cache of compiled templates, or None where there is no safe folder for it:
    the cache only saves time, so it never stops a report from being written."""
    from jinja2 import FileSystemBytecodeCache
    from jinja2.bccache import Bucket

    class Cache(FileSystemBytecodeCache):
        def dump_bytecode(self, bucket: Bucket) -> None:
            with contextlib.suppress(OSError):  # a full or read-only disk: compile next time
                super().dump_bytecode(bucket)

    try:
        return Cache(pattern="__modelloop_reports_%s.cache")
    except (OSError, RuntimeError):  # RuntimeError: Jinja2 found no private temp folder
        return None


def finite(value: Any) -> float | None:
    """A float for a number that can be drawn or compared; None for None, NaN, text, bools."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def measure(value: Any, digits: int = 3) -> str:
    """A metric, PSI or distance: fixed decimals, so a column of them lines up."""
    number = finite(value)
    return "n/a" if number is None else f"{number:.{digits}f}"


def signed(value: Any, digits: int = 3) -> str:
    """A change, with its sign: `+0.012`, `-0.040`."""
    number = finite(value)
    return "n/a" if number is None else f"{number:+.{digits}f}"


def count(value: Any) -> str:
    """Rows and other counts, with thousands separators: `12,345`."""
    number = finite(value)
    if number is None:
        return "n/a"
    return f"{round(number):,}" if number == round(number) else f"{number:,.1f}"


def share(value: Any) -> str:
    """A fraction as a percentage; a small non-zero share never reads as `0.0%`."""
    number = finite(value)
    if number is None:
        return "n/a"
    if 0 < abs(number) < 0.001:
        return "<0.1%" if number > 0 else ">-0.1%"
    return f"{number:.1%}"


def number(value: Any) -> str:
    """A value seen in the data (a minimum, a maximum): short, with separators when large."""
    numeric = finite(value)
    if numeric is None:
        return "n/a" if value is None or isinstance(value, (int, float)) else str(value)
    if numeric == round(numeric) and abs(numeric) < 1e15:
        return f"{round(numeric):,}"
    if abs(numeric) >= 1000:
        return f"{numeric:,.1f}"
    return f"{numeric:.4g}"


def when(value: Any) -> str:
    """An ISO timestamp as a person reads it: `2013-06-30` at midnight, else `2013-06-30 14:05`."""
    if value is None or value == "":
        return "n/a"
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0):
        return f"{moment:%Y-%m-%d}"
    if (moment.second, moment.microsecond) == (0, 0):
        return f"{moment:%Y-%m-%d %H:%M}"
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def px(value: float) -> str:
    """A coordinate in an SVG attribute: a tenth of a pixel is enough."""
    return f"{value:.1f}"
