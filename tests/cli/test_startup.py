"""`modelloop --help` answers at once: the CLI's module graph stays free of the heavy libraries,
which load only when a command needs them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "pyarrow", "sqlalchemy", "mlflow", "sklearn", "duckdb", "pydantic", "numpy")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout.splitlines()[-1])}


def test_the_cli_and_the_package_import_no_heavy_library() -> None:
    loaded = _loaded_after("import modelloop, modelloop.cli.app")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_help_lists_every_command_without_loading_them() -> None:
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from modelloop.cli.app import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "print(result.output)\n"
        "print('HEAVY:' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    for command in ("init", "train", "gate", "serve", "score", "labels", "monitor", "status", "demo"):
        assert command in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_the_package_still_offers_its_public_names_on_access() -> None:
    import modelloop

    assert callable(modelloop.open_project) and modelloop.load_project is modelloop.open_project
    assert modelloop.ProjectConfig.__name__ == "ProjectConfig"
