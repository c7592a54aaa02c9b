"""Deployment files: `docker-compose config` accepts them (CI has no Docker engine, so the
image itself is not built here), `.env.example` documents every variable the README and the
manual (docs/) name and loads as valid settings, and the Dockerfile runs `migrate` then
`serve` as non-root."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from config.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = shutil.which("docker-compose")
DOCS = ROOT / "docs"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The compose files with `.env.example` as `.env`, as a seller would start."""
    for name in ("docker-compose.yml", "docker-compose.btcpay.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    return tmp_path


def compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE, "docker-compose is not installed (scripts/test installs Debian's package)"
    return subprocess.run(
        [COMPOSE, *args], cwd=project, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.slow
def test_compose_config_is_valid_with_the_example_env(project: Path) -> None:
    plain = compose(project, "config", "-q")
    with_btcpay = compose(
        project, "-f", "docker-compose.yml", "-f", "docker-compose.btcpay.yml", "config", "-q"
    )
    services = compose(project, "--profile", "dev", "config", "--services")

    assert plain.returncode == 0, plain.stderr
    assert with_btcpay.returncode == 0, with_btcpay.stderr
    assert set(services.stdout.split()) == {"db", "gateway", "mailpit"}


@pytest.mark.slow
def test_compose_passes_every_env_file_variable_to_the_gateway(project: Path) -> None:
    env = project / ".env"
    env.write_text(
        env.read_text() + "GATEWAY_SMTP__PORT=2525\nGATEWAY_BTCPAY__MODE=legacy\n"
        "GATEWAY_SMTP__SECURITY=tls\n"
    )

    result = compose(project, "config")

    assert result.returncode == 0, result.stderr
    for line in ("GATEWAY_SMTP__PORT: '2525'", "GATEWAY_BTCPAY__MODE: legacy"):
        assert line in result.stdout
    assert "GATEWAY_SMTP__SECURITY: tls" in result.stdout
    assert "GATEWAY_DATABASE_URL: postgres://gateway:" in result.stdout


@pytest.mark.slow
def test_compose_refuses_to_start_without_a_database_password(project: Path) -> None:
    env = project / ".env"
    env.write_text(re.sub(r"(?m)^POSTGRES_PASSWORD=.*$", "", env.read_text()))

    result = compose(project, "config", "-q")

    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_env_example_documents_every_variable_of_the_readme_and_the_manual() -> None:
    written = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))])
    named = set(re.findall(r"GATEWAY_[A-Z0-9_]*[A-Z0-9]", written))
    example = set(re.findall(r"GATEWAY_[A-Z0-9_]*[A-Z0-9]", (ROOT / ".env.example").read_text()))
    wanted = {n for n in named if not n.startswith("GATEWAY_TEST_")}

    assert sorted(wanted - example) == []


def test_env_example_loads_as_valid_settings(tmp_path: Path) -> None:
    settings = load_settings(config_file=None, _env_file=ROOT / ".env.example")

    assert settings.public_url == "https://pay.example.com"
    assert settings.mail_backend == "smtp"
    assert settings.smtp.sender == "licenses@example.com"


def test_dockerfile_is_non_root_with_healthcheck_and_migrates_before_serving() -> None:
    text = (ROOT / "Dockerfile").read_text()

    assert re.search(r"(?m)^FROM python:3\.\d+-slim$", text)
    assert re.search(r"(?m)^USER gateway$", text)
    assert "HEALTHCHECK" in text
    assert "/readyz" in text
    cmd = next(line for line in text.splitlines() if line.startswith("CMD"))
    assert cmd.index("checkout-gateway migrate") < cmd.index("checkout-gateway serve")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored
    assert "data" in ignored


def test_no_shipped_file_trusts_every_proxy_or_keeps_a_client_written_forwarded_for() -> None:
    # issue 16: '*' (or nginx appending to the client's header) lets any client pick its IP
    shipped = [ROOT / "Dockerfile", ROOT / ".env.example", *ROOT.glob("docker-compose*.yml")]
    shipped += [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    wildcard = re.compile(r"(forwarded-allow-ips|FORWARDED_ALLOW_IPS|TRUSTED_PROXIES)\W{0,4}\*")
    text = {p.relative_to(ROOT).as_posix(): p.read_text() for p in shipped}

    assert [name for name, body in text.items() if wildcard.search(body)] == []
    assert [name for name, body in text.items() if "$proxy_add_x_forwarded_for" in body] == []


@pytest.mark.slow
def test_compose_trusts_its_own_network_as_the_proxy(project: Path) -> None:
    result = compose(project, "config")

    assert result.returncode == 0, result.stderr
    subnet = re.search(r"subnet: (\S+)", result.stdout)
    assert subnet is not None
    assert f"GATEWAY_TRUSTED_PROXIES: {subnet[1]}" in result.stdout
