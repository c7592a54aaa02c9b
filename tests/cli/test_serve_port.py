"""`serve` on a port that contradicts a loopback GATEWAY_PUBLIC_URL says so at startup, in
one log line (payment returns and status links would point at the wrong place)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.procs import PYTHON, Process, clean_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.db]


def _startup_log(tmp_path: Path, name: str, port: int, public_url: str) -> list[str]:
    env = clean_env(
        GATEWAY_PUBLIC_URL=public_url,
        GATEWAY_DATA_DIR=str(tmp_path / name),
        GATEWAY_MAIL_BACKEND="file",
        GATEWAY_CONFIG_FILE="",
    )
    args = [PYTHON, "-m", "gateway", "serve", "--port", str(port)]
    with Process(args, log=tmp_path / f"{name}.log", cwd=tmp_path, env=env) as proc:
        proc.wait_http(f"http://127.0.0.1:{port}/readyz")
    return proc.log().splitlines()


def test_serve_warns_once_when_its_port_is_not_the_public_urls(tmp_path: Path) -> None:
    port, other = free_port(), free_port()

    wrong = _startup_log(tmp_path, "wrong", port, f"http://localhost:{other}")
    right = _startup_log(tmp_path, "right", port, f"http://127.0.0.1:{port}")

    named = [line for line in wrong if f"serving on port {port}" in line]
    assert len(named) == 1, "\n".join(wrong)
    assert "WARNING" in named[0]
    assert f"GATEWAY_PUBLIC_URL is http://localhost:{other}" in named[0]
    assert "payment returns" in named[0]
    assert not any("serving on port" in line for line in right), "\n".join(right)
