"""The GitHub Actions workflow `modelloop init` writes beside the project file.

It installs modelloop, checks the project, then trains a candidate and gates it: on the
project's training schedule, when the project file or its data change, or by hand. The text
comes from a Jinja2 template (`templates/github-workflow.yml.jinja`) so the workflow reads as
the YAML it is; a value put into it is quoted (`_quoted`, `_command`) or, in a comment, kept
on its line (`_comment`).
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from modelloop.config import DataConfig, ProjectConfig
from modelloop.errors import ModelloopError
from modelloop.files import write_atomically
from modelloop.timeutil import cron_fields

#: Where GitHub looks for workflows, relative to the repository's root (assumed: the project folder).
WORKFLOW_FILE = PurePosixPath(".github/workflows/modelloop.yml")

#: What the workflow does, in the words `modelloop init` prints beside its path.
WORKFLOW_SUMMARY = "GitHub Actions: trains and gates on a schedule and on a data change"

#: Weekly, Monday 03:17 UTC: off the top of the hour, when GitHub delays scheduled runs most.
DEFAULT_CRON = "17 3 * * 1"

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Schedule:
    """When the workflow trains: a 5-field cron, its time zone (None: GitHub's UTC), and where
    it came from."""

    cron: str
    timezone: str | None
    note: str


def workflow_path(project_dir: Path) -> Path:
    """Where `write_workflow` puts the workflow for the project in `project_dir`."""
    return Path(project_dir) / WORKFLOW_FILE


def write_workflow(
    project_dir: Path,
    project_file_name: str = "modelloop.yaml",
    *,
    config: ProjectConfig,
    force: bool,
) -> Path:
    """Write `project_dir/.github/workflows/modelloop.yml` (temporary file, fsync, rename);
    refuses to overwrite an existing one unless `force`, since a team edits its workflow."""
    path = workflow_path(project_dir)
    if path.exists() and not force:
        raise ModelloopError(f"{path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise ModelloopError(f"{path} is a folder; the workflow needs that name")
    text = render_workflow(project_dir, project_file_name, config=config)
    write_atomically(path, text, what="the workflow")
    return path


def render_workflow(
    project_dir: Path, project_file_name: str = "modelloop.yaml", *, config: ProjectConfig
) -> str:
    """The workflow's text for the project file `project_dir/project_file_name`."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    import modelloop

    watched, unwatched = data_paths(config.data, Path(project_dir))
    environment = Environment(
        loader=PackageLoader("modelloop.scaffold", "templates"),
        autoescape=False,  # YAML, not HTML: values are quoted by `_quoted` instead
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["quoted"] = _quoted
    environment.filters["comment"] = _comment
    environment.filters["command"] = _command
    project_option = (
        "" if project_file_name == "modelloop.yaml" else f" --project {shlex.quote(project_file_name)}"
    )
    return environment.get_template("github-workflow.yml.jinja").render(
        name=config.name,
        project_file=project_file_name,
        project_option=project_option,
        paths=[project_file_name, *watched],
        unwatched=unwatched,
        schedule=train_schedule(config, project_file_name),
        # A local version (0.2.0+g1234) is not allowed after >= (PEP 440): keep the public part.
        version=modelloop.__version__.split("+")[0],
    )


def train_schedule(config: ProjectConfig, project_file_name: str = "modelloop.yaml") -> Schedule:
    """The project's `schedule.train` in `schedule_timezone`, else weekly. GitHub takes 5-field
    cron only, so a shorthand (@daily) is written as the fields it stands for."""
    given = config.schedule.train
    if given is None:
        return Schedule(
            DEFAULT_CRON,
            None,
            f"weekly, Monday 03:17 UTC ({project_file_name} sets no schedule.train)",
        )
    written = " ".join(given.split())
    cron = cron_fields(given)
    origin = "" if cron == written else f" ({written})"
    zone = config.schedule_timezone
    return Schedule(
        cron,
        None if zone == "UTC" else zone,
        f"schedule.train in {project_file_name}{origin}, in {zone} (schedule_timezone)",
    )


def data_paths(data: DataConfig, project_dir: Path) -> tuple[list[str], str | None]:
    """The `push` path filters that mean "the data changed": the source and its folder, relative
    to the project folder. A source GitHub cannot see change (a function, a path outside the
    folder) gives no filter and a reason instead; the schedule still retrains on it."""
    from modelloop.data import FunctionSource, open_source

    source = data.source
    if isinstance(open_source(source, project_dir, data.timestamp), FunctionSource):
        return [], f"data.source is a function ({source}): a push cannot tell when its data change"
    relative = _relative(source, project_dir)
    if relative is None:
        return [], (
            f"data.source ({source}) lies outside this folder, so outside the repository, where the "
            "runner cannot read it either: move the data into this folder and update data.source"
        )
    folder = PurePosixPath()
    for part in PurePosixPath(relative).parts[:-1]:
        if _GLOB_CHARACTERS & set(part):
            break
        folder /= part
    paths = [relative]
    if folder.parts:
        paths.append(f"{folder}/**")
    return paths, None


def _relative(source: str, project_dir: Path) -> str | None:
    """`source` as a path inside `project_dir` in POSIX form, or None when it is outside."""
    path = Path(source)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(Path(project_dir).resolve())
        except ValueError:
            return None
    text = posixpath.normpath(path.as_posix())
    if text == ".." or text.startswith("../") or posixpath.isabs(text):
        return None
    return text


def _quoted(value: object) -> str:
    """`value` as a YAML double-quoted string (JSON's strings are YAML's), escaped where not
    printable so a newline in a name cannot end the line."""
    text = str(value)
    return json.dumps(text, ensure_ascii=not text.isprintable())


def _command(text: str) -> str:
    """A shell command as a YAML scalar: plain when YAML reads it back unchanged, else quoted."""
    return text if yaml.safe_load(text) == text else _quoted(text)


def _comment(value: object) -> str:
    """Text for a YAML comment, on one line: a newline in a path must not end the comment."""
    return "".join(c if c.isprintable() else " " for c in str(value))
