"""Real processes for tests: free ports on 127.0.0.1, start, wait until serving, always stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the developer's GATEWAY_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class Process:
    """`with Process([...], log=path) as proc:` runs a command and stops it on exit.

    SIGTERM first (so servers shut down cleanly), SIGKILL if it does not stop in time.
    """

    def __init__(
        self, args: list[str], *, log: Path, cwd: Path | None = None, env: dict[str, str]
    ) -> None:
        self.args, self.log_path, self.cwd, self.env = args, log, cwd, env
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Process:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 30.0, *, any_status: bool = False) -> None:
        """Until `url` answers 200 (or anything, with `any_status`); fails with the process
        log if the process dies or the time runs out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"{self.args} exited early:\n{self.log()}"
            try:
                status = httpx.get(url, timeout=1).status_code
                if status == 200 or any_status:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{url} not up after {timeout}s:\n{self.log()}"
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)


class Sandbox:
    """`checkout-gateway sandbox` on free ports: the gateway plus both fakes, ready to use."""

    def __init__(self, tmp_path: Path) -> None:
        self.gateway, self.stripe, self.btcpay = (free_port() for _ in range(3))
        args = ["sandbox", "--port", str(self.gateway), "--stripe-port", str(self.stripe)]
        args += ["--btcpay-port", str(self.btcpay)]
        self.url = f"http://127.0.0.1:{self.gateway}"
        self.process = Process(
            [PYTHON, "-m", "gateway", *args],
            log=tmp_path / "sandbox.log",
            cwd=tmp_path,
            env=clean_env(),
        )

    def __enter__(self) -> Process:
        self.process.__enter__()
        try:
            self.process.wait_http(f"{self.url}/readyz")
        except BaseException:
            self.process.stop()  # __exit__ does not run when __enter__ fails
            raise
        return self.process

    def __exit__(self, *exc: object) -> None:
        self.process.stop()
