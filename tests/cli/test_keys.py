"""`checkout-gateway keys ...` and key handling at `migrate` / `serve`, as real processes."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import PYTHON, clean_env

# Every test here runs `python -m gateway ...` processes.
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "gateway", *args],
        cwd=cwd,
        env=clean_env(GATEWAY_CONFIG_FILE="", GATEWAY_DATA_DIR=str(cwd / "data")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _pems(cwd: Path) -> list[Path]:
    return sorted((cwd / "data" / "license-keys").glob("*.pem"))


def test_generate_rotate_list_and_prune(tmp_path: Path) -> None:
    generated = _run(["keys", "generate"], tmp_path)
    again = _run(["keys", "generate"], tmp_path)
    [first] = _pems(tmp_path)
    rotated = _run(["keys", "rotate"], tmp_path)
    listed = _run(["keys", "list", "--json"], tmp_path)
    pruned = _run(["keys", "prune"], tmp_path)

    assert generated.returncode == 0, generated.stderr
    assert f"generated signing key {first.stem}" in generated.stdout
    assert again.returncode == 0
    assert "nothing to do" in again.stdout
    assert rotated.returncode == 0, rotated.stderr
    assert "restart every gateway process" in rotated.stdout
    pems = _pems(tmp_path)
    assert len(pems) == 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in pems)
    rows = json.loads(listed.stdout)
    assert [r["kid"] for r in rows] == [p.stem for p in pems]
    assert [r["role"] for r in rows] == ["retired", "signing"]
    assert rows[0]["published_until"] is not None
    # the retired key signed tokens that are still valid: nothing may be pruned yet
    assert pruned.returncode == 0, pruned.stderr
    assert "nothing to prune" in pruned.stdout
    assert len(_pems(tmp_path)) == 2


@pytest.mark.db
def test_migrate_creates_the_first_key(tmp_path: Path) -> None:
    result = _run(["migrate"], tmp_path)

    assert result.returncode == 0, result.stderr
    [pem] = _pems(tmp_path)
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600


def test_serve_refuses_a_world_readable_key_file_naming_it(tmp_path: Path) -> None:
    assert _run(["keys", "generate"], tmp_path).returncode == 0
    [pem] = _pems(tmp_path)
    pem.chmod(0o644)

    served = _run(["serve", "--port", "1"], tmp_path)
    rotated = _run(["keys", "rotate"], tmp_path)

    for result in (served, rotated):
        assert result.returncode == 2, result.stderr
        assert "configuration error" in result.stderr
        assert f"license signing key {pem} is accessible by group/others" in result.stderr
        assert f"chmod 600 {pem}" in result.stderr
        assert "Traceback" not in result.stderr
    assert len(_pems(tmp_path)) == 1  # rotate added nothing next to an unsafe key
