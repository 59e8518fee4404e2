"""Rebasing the paths modelloop's metadata database records under a moved home."""

import json
import sqlite3
from pathlib import Path

from modelloop.store.relocate import rebase_metadata_db


def test_paths_under_the_old_home_move_and_no_others(tmp_path: Path) -> None:
    old, new = Path("/srv/old/.modelloop"), Path("/data/new home/.modelloop")
    payload = {
        "report_html": f"{old}/reports/m/monitor.html",
        "history": [{"report": f"{old}/reports/m/earlier.html"}],
        "sibling": f"{old}-other/reports/x.html",
        "input": "/srv/data/rows.csv",
        "note": f"the words {old}/ inside a sentence stay",
    }
    db = tmp_path / "modelloop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE modelloop_monitoring (id INTEGER PRIMARY KEY, result TEXT)")
        conn.execute("CREATE TABLE other_table (value TEXT)")
        conn.execute("INSERT INTO modelloop_monitoring (result) VALUES (?)", (json.dumps(payload),))
        conn.execute("INSERT INTO other_table VALUES (?)", (json.dumps(payload),))

    assert rebase_metadata_db(db, old, new) == 1
    assert rebase_metadata_db(db, old, new) == 0
    with sqlite3.connect(db) as conn:
        moved = json.loads(conn.execute("SELECT result FROM modelloop_monitoring").fetchone()[0])
        untouched = json.loads(conn.execute("SELECT value FROM other_table").fetchone()[0])
    assert moved["report_html"] == f"{new}/reports/m/monitor.html"
    assert moved["history"] == [{"report": f"{new}/reports/m/earlier.html"}]
    assert {k: moved[k] for k in ("sibling", "input", "note")} == {
        k: payload[k] for k in ("sibling", "input", "note")
    }
    assert untouched == payload


def test_a_missing_database_is_nothing_to_do(tmp_path: Path) -> None:
    assert rebase_metadata_db(tmp_path / "absent.db", tmp_path / "a", tmp_path / "b") == 0
