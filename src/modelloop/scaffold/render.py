"""Write a proposal as a commented project file.

The YAML is written by hand (no round-trip YAML library is installed) because the comments are
the point: each choice says why, with the numbers, where the user reads the field. Every value
goes through `_scalar`, which quotes whatever a YAML reader could take for something else.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import textwrap
from pathlib import Path
from typing import Any

import yaml

from modelloop.config import DERIVED_ID
from modelloop.errors import ModelloopError
from modelloop.files import write_atomically
from modelloop.scaffold.proposal import Proposal, source_text
from modelloop.timeutil import format_duration

#: Trailing comments start at this column when the code before them is shorter.
_COMMENT_COLUMN = 34
_WIDTH = 98
_PLAIN = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]*")


def render(proposal: Proposal) -> str:
    """The project file's text: valid YAML that `parse_config` accepts, explained in comments."""
    parts = [
        _header(proposal),
        _top(proposal),
        _data(proposal),
        _model(proposal),
        _training(proposal),
        _gate(proposal),
        _monitoring(proposal),
        _retraining(proposal),
    ]
    return "\n".join("\n".join(lines) for lines in parts) + "\n"


def write(proposal: Proposal, directory: Path, force: bool = False) -> Path:
    """Write `directory/modelloop.yaml` (temporary file, fsync, rename); refuses to overwrite
    an existing one unless `force`. `data.source` is made relative to `directory`."""
    directory = Path(directory)
    path = directory / "modelloop.yaml"
    if path.exists() and not force:
        raise ModelloopError(f"{path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise ModelloopError(f"{path} is a folder; the project file needs that name")
    proposal = dataclasses.replace(proposal, source=source_text(proposal.path, directory))
    text = render(proposal)
    write_atomically(path, text, what="the project file")
    return path


# -- the sections ---------------------------------------------------------------------------


def _header(p: Proposal) -> list[str]:
    lines = _block(
        0,
        f"modelloop project file for {p.path.name}, proposed by `modelloop init --from`. Each "
        "choice says why; change what you know better, then run `modelloop train`. Durations "
        f"are measured on the data's own time column ({p.time.name}), never on the wall clock.",
    )
    for note in p.notes:
        lines += _block(0, f"Note: {note}")
    return lines


def _top(p: Proposal) -> list[str]:
    return [
        _field(0, "name", p.name, "the registered model's name in MLflow"),
        _field(0, "task", p.task, p.target.reason),
    ]


def _data(p: Proposal) -> list[str]:
    t = p.target
    lines = [
        "",
        "data:",
        *_block(2, "The table, relative to this file (a glob may name several files)."),
        _field(2, "source", p.source),
        _field(
            2,
            "timestamp",
            p.time.name,
            "when the row happened"
            + (": the first column of dates (--time to choose)" if p.time.inferred else ""),
        ),
        _field(2, "target", t.column, "what the model predicts"),
    ]
    if t.positive is not None:
        lines.append(_field(2, "positive", t.positive, "the class whose probability is predicted"))
        lines.append(
            _field(2, "negative", t.negative, "the other class: any other label is refused")
        )
    if p.id is not None:
        lines.append(_field(2, "id", p.id, "joins predictions with the labels that arrive later"))
    else:
        lines += _block(
            2,
            f"No id column: modelloop derives `{DERIVED_ID}` from each row's time and feature "
            f"values; a label file may carry `{DERIVED_ID}`, or the row's time and feature "
            "columns plus the target (`modelloop labels ingest` derives the id the same way). "
            "Add `id: COLUMN` if the table has one.",
        )
    lines += _features(p)
    return lines


def _features(p: Proposal) -> list[str]:
    f = p.features
    calendar = {c.column: c for c in f.seasonal}

    def items(columns: list[str]) -> list[str]:
        out = []
        for column in columns:
            c = calendar.get(column)
            note = f"calendar ({c.kind}, {c.low} to {c.high}): see monitoring.seasonal" if c else None
            out.append(_item(6, column, note))
        return out

    lines = ["  features:"]
    lines += _block(
        4,
        "Numbers, whole-number codes included (the trees split a code like any number; move a "
        "code whose order means nothing to categorical), and categories (text, true/false).",
    )
    lines += ["    numeric:" + ("" if f.numeric else " []"), *items(f.numeric)]
    lines += ["    categorical:" + ("" if f.categorical else " []"), *items(f.categorical)]
    if f.left_out:
        lines += _block(4, "Left out (move a column back under numeric or categorical if you disagree):")
        for c in f.left_out:
            lines += _block(4, f"  {c.column}: {c.detail}", indent_more="    ")
    return lines


def _model(p: Proposal) -> list[str]:
    params = p.params
    why = {
        "max_iter": "boosting rounds",
        "learning_rate": "how far each round corrects the last",
        "min_samples_leaf": f"a small table ({p.table_rows:,} rows): the default leaf of 20 rows "
        "would allow few splits",
        "random_state": "the same data gives the same model",
    }
    lines = [
        "",
        "model:",
        *_block(
            2,
            "Gradient-boosted trees: strong on tables as they come; modelloop adds the "
            "preprocessing (missing values and unseen categories never become a server error).",
        ),
        _field(2, "estimator", p.estimator),
        "  params:",
    ]
    lines += [_field(4, key, value, why.get(key)) for key, value in params.items()]
    return lines


def _training(p: Proposal) -> list[str]:
    w = p.windows
    fmt = _when(p)
    fitted = f"{w.train_rows:,} rows" + (", all the history" if w.covers_all else "")
    story = (
        f"The data is {w.cadence.value} (median gap {format_duration(w.median_gap)} between "
        f"distinct times), {fmt(w.first)} to {fmt(w.last)}, {w.rows:,} labelled rows. "
        f"`modelloop train` runs at the latest time, {fmt(w.last)}, and sees the rows labelled by "
        f"then (up to {fmt(w.labelled_until)}, label delay {format_duration(w.label_delay)}): "
        f"the newest {format_duration(w.holdout)} of them ({w.holdout_rows:,} rows) are the "
        f"holdout, and the {format_duration(w.training)} before that ({fitted}) are fitted. "
        "A training window aims at 200+ rows over at least a year (a full cycle of seasons), "
        "or all the history when there is less, and at most 500,000 rows."
    )
    metric_note = (
        "ROC AUC on the holdout: higher is better, 0.5 is guessing"
        if p.metric == "roc_auc"
        else "root mean squared error, in the target's unit: lower is better"
    )
    return [
        "",
        "training:",
        *_block(2, story),
        _field(2, "window", format_duration(w.training), "labelled history fitted, before the holdout"),
        "",
        "evaluation:",
        _field(2, "metric", p.metric, metric_note),
        _field(
            2,
            "holdout",
            format_duration(w.holdout),
            f"{w.holdout_rows:,} rows; aim: {format_duration(p.windows.cadence.min_holdout)} or "
            "more with 30+ rows (10% of a short history), at most a quarter of the labelled rows",
        ),
    ]


def _gate(p: Proposal) -> list[str]:
    if p.metric == "rmse":
        example = _floor_example(p)
        floor = (
            f"# floor: {example}",
            "for rmse a ceiling: a candidate scoring above it is never promoted "
            f"(always predicting the mean scores about {example})",
        )
    else:
        floor = ("# floor: 0.6", "a candidate below this ROC AUC is never promoted")
    return [
        "",
        "gate:",
        *_block(
            2,
            "A retrained candidate replaces the champion only if it scores at least as well on the "
            "same holdout, later than both training windows.",
        ),
        _field(2, "tolerance", 0.0, "how much worse than the champion is still fine"),
        _comment_line(2, *floor),
    ]


def _monitoring(p: Proposal) -> list[str]:
    w = p.windows
    if p.metric == "rmse":
        ceiling = _floor_example(p)
        performance = (
            f"# performance_floor: {ceiling}",
            "for rmse a ceiling: monitored rmse above it is an alert",
        )
    else:
        performance = ("# performance_floor: 0.6", "monitored ROC AUC below it is an alert")
    lines = [
        "",
        "monitoring:",
        _field(
            2,
            "window",
            format_duration(w.monitoring),
            f"prediction-log rows one run looks at (about {w.monitor_rows:,} at this table's rate)",
        ),
        _field(
            2,
            "label_delay",
            format_duration(w.label_delay),
            _delay_note(p),
        ),
        _field(
            2,
            "min_labelled_rows",
            w.min_labelled_rows,
            "fewer labelled rows in a window: no performance verdict (half a window's rows, at "
            "most 100)",
        ),
        *_block(
            2,
            "drift_threshold (PSI above which a feature drifts, 0.2) and drift_share (the share "
            "of drifting features that is an alert, 0.5) keep their defaults.",
        ),
        _comment_line(2, *performance),
    ]
    if p.seasonal:
        lines.append(
            _comment_line(
                2,
                "seasonal:",
                "calendar features: their drift is reported but does not count toward an alert",
            )
        )
        lines += [_item(4, c.column) for c in p.seasonal]
    return lines


def _delay_note(p: Proposal) -> str:
    w = p.windows
    if w.label_delay == w.cadence.step:
        return f"one {w.cadence.value} step: set it to how long labels really take to arrive"
    return (
        f"the newest label ({_when(p)(w.last_labelled)}) is this much older than the newest row "
        "(rows after it have no target yet): set it to how long labels really take to arrive"
    )


def _retraining(p: Proposal) -> list[str]:
    return [
        "",
        "retraining:",
        _field(
            2,
            "cooldown",
            format_duration(p.windows.cooldown),
            "at most one retraining per holdout's length: by then the last model's holdout has "
            "become training data",
        ),
    ]


# -- YAML text ------------------------------------------------------------------------------


def _field(indent: int, key: str, value: Any, comment: str | None = None) -> str:
    return _comment_line(indent, f"{key}: {_scalar(value)}", comment)


def _item(indent: int, value: Any, comment: str | None = None) -> str:
    return _comment_line(indent, f"- {_scalar(value)}", comment)


def _comment_line(indent: int, code: str, comment: str | None = None) -> str:
    line = " " * indent + code
    if not comment:
        return line
    return line.ljust(_COMMENT_COLUMN - 1) + " # " + _clean(comment)


def _block(indent: int, text: str, indent_more: str = "") -> list[str]:
    """A comment paragraph, wrapped."""
    prefix = " " * indent + "# "
    return textwrap.wrap(
        _clean(text),
        width=_WIDTH,
        initial_indent=prefix,
        subsequent_indent=prefix + indent_more,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _clean(text: str) -> str:
    """Comment text on one line: a newline in a column name must not end the comment."""
    return "".join(c if c.isprintable() else " " for c in text)


def _scalar(value: Any) -> str:
    """`value` as a YAML scalar that reads back as exactly `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    printable = all(c.isprintable() for c in text)
    return json.dumps(text, ensure_ascii=not printable)  # JSON strings are YAML double-quoted


def _float(value: float) -> str:
    if not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:  # PyYAML reads 1e+20 as text, 1.0e+20 as a number
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _when(p: Proposal) -> Any:
    """Dates for daily and slower data; times to the minute for hourly data."""
    pattern = "%Y-%m-%d %H:%M" if p.windows.cadence.value == "hourly" else "%Y-%m-%d"
    return lambda t: t.strftime(pattern)


def _floor_example(p: Proposal) -> str:
    """The rmse of predicting the mean (the target's spread), rounded: a ceiling worth beating."""
    spread = p.target_spread
    if spread is None or not math.isfinite(spread) or spread <= 0:
        return "1.0"
    digits = max(0, 2 - math.floor(math.log10(spread)))
    return f"{round(spread, digits):.{digits}f}" if digits else f"{round(spread):.1f}"
