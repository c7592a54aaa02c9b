"""Against a real `serve` behind a real proxy process (issue 16): a client-supplied
X-Forwarded-For cannot move a client to another rate-limit bucket, whether the proxy appends
to the header (nginx's `$proxy_add_x_forwarded_for`) or sets it, and whether the trust comes
from `--forwarded-allow-ips` or `GATEWAY_TRUSTED_PROXIES` under the Docker image's own
command. Everything runs on loopback: the proxy talks to the gateway from 127.0.0.2 (the one
trusted address), the clients come from other 127.0.0.x addresses."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.procs import PYTHON, ROOT, Process, clean_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.db]

PROXY_SOURCE = "127.0.0.2"
BUDGET = 3  # lost-key posts per client IP and hour


def _env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    return clean_env(
        GATEWAY_CONFIG_FILE="",
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
        GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}",
        GATEWAY_MAIL_BACKEND="file",
        GATEWAY_LIMITS__RECOVER_PER_IP=f"{BUDGET}/hour",
        **extra,
    )


def _proxy(tmp_path: Path, upstream: int, mode: str) -> tuple[int, Process]:
    port = free_port()
    args = [PYTHON, "-m", "tests.support.proxy", "--listen", str(port)]
    args += ["--upstream", str(upstream), "--source", PROXY_SOURCE, "--mode", mode]
    return port, Process(args, log=tmp_path / f"proxy-{mode}.log", cwd=ROOT, env=clean_env())


def _lost_key_posts(port: int, client: str, forged: list[str | None]) -> list[int]:
    """One lost-key post from `client` per forged X-Forwarded-For (each a new email, so only
    the per-IP budget counts)."""
    transport = httpx.HTTPTransport(local_address=client)
    statuses = []
    with httpx.Client(transport=transport, base_url=f"http://127.0.0.1:{port}") as http:
        for n, value in enumerate(forged):
            headers = {} if value is None else {"x-forwarded-for": value}
            answer = http.post(
                "/licenses/recover",
                data={"email": f"buyer{n}.{client}@example.com"},
                headers=headers,
                timeout=10,
            )
            statuses.append(answer.status_code)
    return statuses


def _forged(count: int) -> list[str | None]:
    return [f"198.51.100.{n}" for n in range(1, count + 1)]


REFUSED_AT_THE_END = [200] * BUDGET + [429]


@pytest.fixture(scope="module")
def behind_proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """`serve --proxy-headers --forwarded-allow-ips 127.0.0.2` (as the deployment docs used
    to run it), with an appending and a setting proxy in front; the ports by name."""
    tmp_path = tmp_path_factory.mktemp("trusted-proxies")
    port = free_port()
    args = [PYTHON, "-m", "gateway", "serve", "--port", str(port), "--no-mailer"]
    args += ["--proxy-headers", "--forwarded-allow-ips", PROXY_SOURCE]
    with Process(args, log=tmp_path / "serve.log", cwd=tmp_path, env=_env(tmp_path, port)) as gw:
        gw.wait_http(f"http://127.0.0.1:{port}/readyz")
        append_port, append = _proxy(tmp_path, port, "append")
        set_port, setting = _proxy(tmp_path, port, "set")
        with append, setting:
            append.wait_http(f"http://127.0.0.1:{append_port}/healthz")
            setting.wait_http(f"http://127.0.0.1:{set_port}/healthz")
            yield {"gateway": port, "append": append_port, "set": set_port}


@pytest.mark.parametrize(("mode", "client", "neighbour"), [("append", 3, 4), ("set", 5, 6)])
def test_a_forged_forwarded_for_through_the_proxy_cannot_leave_the_clients_bucket(
    behind_proxies: dict[str, int], mode: str, client: int, neighbour: int
) -> None:
    # given one client behind the proxy, forging a new address on every post
    port = behind_proxies[mode]

    # when it posts one more time than its budget, then another client posts once
    forging = _lost_key_posts(port, f"127.0.0.{client}", _forged(BUDGET + 1))
    other = _lost_key_posts(port, f"127.0.0.{neighbour}", [None])

    # then the forged addresses changed nothing, and the other client has its own budget
    assert forging == REFUSED_AT_THE_END
    assert other == [200]


def test_a_client_that_skips_the_proxy_cannot_forge_its_address(
    behind_proxies: dict[str, int],
) -> None:
    # a peer that is not a trusted proxy: its header is ignored
    direct = _lost_key_posts(behind_proxies["gateway"], "127.0.0.7", _forged(BUDGET + 1))

    assert direct == REFUSED_AT_THE_END


def _image_command(port: int) -> str:
    """The Dockerfile's CMD (its `sh -c` script), listening on `port` on loopback."""
    text = (ROOT / "Dockerfile").read_text()
    cmd = next(line for line in text.splitlines() if line.startswith("CMD"))
    shell, flag, script = json.loads(cmd.removeprefix("CMD"))
    assert (shell, flag) == ("sh", "-c")
    local = re.sub(r"--host \S+ --port 8000", f"--host 127.0.0.1 --port {port}", script)
    assert local != script, "the image no longer listens with --host ... --port 8000"
    return str(local)


def test_the_docker_image_behind_an_appending_proxy_keeps_each_client_in_its_bucket(
    tmp_path: Path,
) -> None:
    # given the image's own command, with the trusted proxies docker-compose.yml sets (here
    # 127.0.0.2 stands for the compose network), behind nginx appending to X-Forwarded-For
    port = free_port()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "checkout-gateway"
    shim.write_text(f'#!/bin/sh\nexec "{PYTHON}" -m gateway "$@"\n')
    shim.chmod(0o755)
    env = _env(tmp_path, port, GATEWAY_TRUSTED_PROXIES=PROXY_SOURCE, SERVE_WORKERS="1")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    image = Process(["sh", "-c", _image_command(port)], log=tmp_path / "gw.log", env=env)
    with image:
        image.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        proxy_port, proxy = _proxy(tmp_path, port, "append")
        with proxy:
            proxy.wait_http(f"http://127.0.0.1:{proxy_port}/healthz")

            # when one client forges a new address on every post, and another posts once
            forging = _lost_key_posts(proxy_port, "127.0.0.8", _forged(BUDGET + 1))
            other = _lost_key_posts(proxy_port, "127.0.0.9", [None])

    # then the forging client is refused at BUDGET + 1; the log names the real clients
    assert forging == REFUSED_AT_THE_END
    assert other == [200]
    assert '127.0.0.9:0 - "POST /licenses/recover' in image.log()
    assert "198.51.100." not in image.log()


def test_a_wildcard_for_forwarded_allow_ips_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    # a process with a deadline: a serve that accepted '*' would listen until killed
    port = str(free_port())
    args = [PYTHON, "-m", "gateway", "serve", "--port", port, "--forwarded-allow-ips", "*"]
    env = _env(tmp_path, int(port))
    try:
        result = subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("serve started with --forwarded-allow-ips '*'") from exc

    assert result.returncode == 2
    assert "'*' would let any client choose its own address" in result.stderr
