"""Against a real `serve`: `/metrics` is not public by default (issue 16).

It used to answer anyone who reached the port, sales counts included. Now an anonymous
client gets a 404 unless the operator configured a way in; with `GATEWAY_METRICS_TOKEN` the
scraper's bearer token gets the metrics from every worker.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.procs import PYTHON, Process, clean_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.db]

TOKEN = "scrape-token-for-the-test"
SCRAPES = 6  # enough for both workers to answer some


def _env(tmp_path: Path, base: str, **extra: str) -> dict[str, str]:
    return clean_env(
        GATEWAY_CONFIG_FILE="",
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
        GATEWAY_PUBLIC_URL=base,
        GATEWAY_MAIL_BACKEND="file",
        GATEWAY_BTCPAY__ENABLED="false",
        GATEWAY_STRIPE__ENABLED="false",
        **extra,
    )


def _serve(port: int, *flags: str) -> list[str]:
    return [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port), *flags]


def test_anonymous_scrape_of_the_main_port_gets_no_metrics_by_default(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # given `serve` with the default settings (no metrics token, nothing made public)
    with Process(
        _serve(port), log=tmp_path / "gw.log", cwd=tmp_path, env=_env(tmp_path, base)
    ) as gw:
        gw.wait_http(f"{base}/readyz")

        # when anyone who reaches the port asks for the metrics
        anonymous = httpx.get(f"{base}/metrics", timeout=10)
        guessed = httpx.get(f"{base}/metrics", headers={"authorization": "Bearer x"}, timeout=10)
        log = gw.log()

    # then they get the same 404 as any unknown path, and no metric at all
    for answer in (anonymous, guessed):
        assert answer.status_code == 404
        assert answer.json()["error"] == "not_found"
        assert "gateway_" not in answer.text
    # and the operator's log says how to open it
    assert "GATEWAY_METRICS_TOKEN" in log


@pytest.mark.postgres
def test_the_configured_token_scrapes_every_worker_and_nothing_else_does(
    empty_pg: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _env(tmp_path, base, GATEWAY_DATABASE_URL=empty_pg, GATEWAY_METRICS_TOKEN=TOKEN)
    # given two workers and a metrics token
    with Process(
        _serve(port, "--workers", "2"), log=tmp_path / "gw.log", cwd=tmp_path, env=env
    ) as gw:
        gw.wait_http(f"{base}/readyz", timeout=60)

        # when the scraper sends the token, and an anonymous client does not
        scraper = {"authorization": f"Bearer {TOKEN}"}
        scrapes = [
            httpx.get(f"{base}/metrics", headers=scraper, timeout=10) for _ in range(SCRAPES)
        ]
        anonymous = [httpx.get(f"{base}/metrics", timeout=10) for _ in range(SCRAPES)]

    # then every scrape, whichever worker answered, has the gateway's metrics
    for scrape in scrapes:
        assert scrape.status_code == 200
        assert scrape.headers["content-type"].startswith("text/plain")
        lines = [line for line in scrape.text.splitlines() if line.startswith("gateway_")]
        assert any(line.startswith('gateway_outbox_emails{state="pending"}') for line in lines)
    # and the anonymous client none of them
    for answer in anonymous:
        assert answer.status_code == 401
        assert "gateway_" not in answer.text
