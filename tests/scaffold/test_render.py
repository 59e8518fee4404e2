"""The project file as text: it parses back to exactly the proposal, whatever the column names,
and `write` never overwrites a project file by surprise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from modelloop.config import load_config, parse_config
from modelloop.errors import ModelloopError
from modelloop.scaffold import propose, render, write
from modelloop.scaffold.render import _scalar
from tests.scaffold.conftest import air_passengers

#: Names a YAML writer that does not quote would turn into booleans, numbers, nulls or comments.
ODD = ["yes", "on", "null", "123", "1e3", "0x1F", "a: b", "c # d", "- e", "ünïcode", "tab\there",
       "new\nline", '"quoted"', "'single'", "[list]", "{map}", "&anchor", "*alias", "!tag", "%x", "@at"]


@pytest.mark.parametrize(
    "value", [*ODD, "", " padded ", True, False, 0, 1, -7, 0.1, 1e20, 1e-5, 2.0, "2013-01-01"]
)
def test_scalars_read_back_as_written(value: object) -> None:
    assert yaml.safe_load(f"key: {_scalar(value)}") == {"key": value}


def test_odd_column_names_survive(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {"when: now": pd.date_range("2020-01-01", periods=n, freq="D"), "target # y": rng.normal(size=n)}
    )
    for i, name in enumerate(ODD):
        frame[name] = rng.normal(size=n) if i % 2 else rng.choice(["a", "b", "c"], size=n)
    path = tmp_path / "odd [1].parquet"
    frame.to_parquet(path, index=False)
    proposal = propose(path, target="target # y", project_dir=tmp_path / "project")
    config = parse_config(yaml.safe_load(render(proposal)))
    assert config.data.timestamp == "when: now"
    assert config.data.target == "target # y"
    assert sorted(config.data.features.all) == sorted(ODD)
    # data.source is a glob: the brackets in the file name are escaped, so it names this file
    assert config.data.source == "../odd [[]1].parquet"
    assert config.name == "odd-1"


def test_write_refuses_to_overwrite(air_csv: Path, tmp_path: Path) -> None:
    proposal = propose(air_csv, target="passengers", project_dir=tmp_path)
    first = write(proposal, tmp_path / "project")
    assert first == tmp_path / "project" / "modelloop.yaml"
    with pytest.raises(ModelloopError, match=r"project/modelloop.yaml exists; pass --force"):
        write(proposal, tmp_path / "project")
    assert write(proposal, tmp_path / "project", force=True) == first
    assert [p.name for p in first.parent.iterdir()] == ["modelloop.yaml"]  # no temporary left


def test_write_makes_the_source_relative_to_the_folder_written(tmp_path: Path) -> None:
    path = tmp_path / "tables" / "air.csv"
    path.parent.mkdir()
    air_passengers().to_csv(path, index=False)
    proposal = propose(path, target="passengers", project_dir=tmp_path)  # proposed for another folder
    written = write(proposal, tmp_path / "deep" / "project")
    config = load_config(written)
    assert config.data.source == "../../tables/air.csv"
    assert (written.parent / config.data.source).resolve() == path.resolve()


def test_the_comments_explain_the_choices(air_csv: Path, tmp_path: Path) -> None:
    text = render(propose(air_csv, target="passengers", project_dir=tmp_path))
    assert "# The data is monthly (median gap 31d between distinct times), 1949-01-01 to 1960-12-01" in text
    assert "lower is better" in text
    assert "# floor:" in text and "for rmse a ceiling" in text
    assert "# performance_floor:" in text
    assert "No id column: modelloop derives `row_id`" in text
    assert "`modelloop labels ingest` derives the id the same way" in " ".join(
        line.lstrip("# ") for line in text.splitlines()
    )
