"""The `tortoise` command line (`makemigrations`, `migrate`) finds its config through
`[tool.tortoise]` and reaches the database the gateway's settings name; the gateway's own
database module reads no environment."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gateway.db import database
from tests.support.procs import PYTHON, ROOT, clean_env

CONFIG_OF_THE_TORTOISE_CLI = """
import json
from tortoise.cli.utils import get_tortoise_config, tortoise_orm_config
path = tortoise_orm_config()
print(json.dumps({"path": path, "config": get_tortoise_config(path).to_dict()}))
"""


def test_tortoise_cli_config_follows_the_gateway_settings(tmp_path: Path) -> None:
    # given the gateway configured for a database of its own, as an operator would
    wanted = tmp_path / "gateway.sqlite3"
    env = clean_env(GATEWAY_DATABASE_URL=f"sqlite://{wanted}", GATEWAY_CONFIG_FILE="")

    # when the tortoise command line resolves its config from the project (pyproject.toml)
    result = subprocess.run(
        [PYTHON, "-c", CONFIG_OF_THE_TORTOISE_CLI],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(result.stdout)

    # then it is the gateway's config for that database, migrations included
    assert found["path"] == "gateway.db.tortoise_cli.TORTOISE_ORM"
    connection = found["config"]["connections"]["default"]
    assert connection["engine"] == "gateway.db.sqlite_immediate"
    assert connection["credentials"]["file_path"] == str(wanted)
    assert found["config"]["apps"]["models"]["migrations"] == "gateway.db.migrations"


def test_the_database_module_reads_no_settings_of_its_own() -> None:
    source = Path(database.__file__).read_text(encoding="utf-8")

    assert not hasattr(database, "TORTOISE_ORM")
    assert "environ" not in source
    assert "load_settings" not in source
