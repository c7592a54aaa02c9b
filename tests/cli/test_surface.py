"""The CLI surface: `--help` on every command, bad arguments as one clear line, `serve`'s
startup checks, `--no-mailer`, and `checkout-gateway sandbox` selling end to end."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from config.catalog import Catalog
from config.settings import Settings
from gateway.app import create_app
from gateway.cli import cli
from gateway.cli.preflight import production_warnings
from gateway.db.models import EmailStatus, OutboxEmail
from sandbox.btcpay.server import FakeServerThread
from sandbox.provider import FakeProvider
from sandbox.stripe.api import FakeStripe
from tests.support.app import running
from tests.support.docs import DOCS
from tests.support.issuer import deliver, event, new_order
from tests.support.procs import PYTHON, Process, Sandbox, clean_env, free_port


def _subcommands(group: click.Group) -> dict[str, click.Command]:
    """The group's commands, through the group's own API: the CLI loads them lazily."""
    ctx = click.Context(group)
    found = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in _subcommands(group).items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


def test_every_command_has_help() -> None:
    commands = _commands(cli)

    for path in commands:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: " in result.output
    names = {" ".join(p) for p in commands}
    for wanted in (
        "serve",
        "migrate",
        "check-config",
        "orders list",
        "orders show",
        "licenses comp",
        "licenses resend",
        "outbox retry",
        "simulate",
        "sandbox",
    ):
        assert wanted in names


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "99999"], "99999 is not in the range 1<=x<=65535"),
        (["serve", "--workers", "0"], "0 is not in the range"),
        (["simulate", "pay", "ord_x"], "'pay' is not one of"),
        (["orders", "list", "--status", "paid"], "'paid' is not one of"),
    ],
)
def test_bad_arguments_are_one_clear_line_without_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "gateway", *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert message in line
    assert line.startswith("checkout-gateway ")
    assert "Traceback" not in result.stderr


def test_production_warnings_name_the_variables(
    settings_factory: Callable[..., Settings],
) -> None:
    local = settings_factory(public_url="http://127.0.0.1:8000", mail_backend="smtp")

    on_all_interfaces = production_warnings(local, host="0.0.0.0")  # noqa: S104
    on_loopback = production_warnings(local, host="127.0.0.1")
    good = production_warnings(
        settings_factory(
            public_url="https://pay.example.com",
            mail_backend="smtp",
            smtp={"from": "licenses@example.com"},
        ),
        host="0.0.0.0",  # noqa: S104
    )

    assert any(
        w.startswith("GATEWAY_PUBLIC_URL is http://127.0.0.1:8000 (serving on 0.0.0.0)")
        for w in on_all_interfaces
    )
    assert any("GATEWAY_SMTP__FROM is licenses@localhost" in w for w in on_all_interfaces)
    assert not any("GATEWAY_PUBLIC_URL" in w for w in on_loopback)
    assert good == []


@pytest.mark.db
@pytest.mark.slow
def test_serve_logs_a_refused_api_key_loudly_and_keeps_serving(tmp_path: Path) -> None:
    stripe = FakeServerThread(FakeStripe().app)
    stripe_url = stripe.start()
    port = free_port()
    env = clean_env(
        GATEWAY_STRIPE__ENABLED="true",
        GATEWAY_STRIPE__API_BASE=stripe_url,
        GATEWAY_STRIPE__SECRET_KEY="sk_test_revoked",
        GATEWAY_STRIPE__WEBHOOK_SECRET="whsec_x",
    )
    serve = [PYTHON, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
    try:
        with Process(serve, log=tmp_path / "gw.log", cwd=tmp_path, env=env) as gw:
            gw.wait_http(f"http://127.0.0.1:{port}/healthz")
            options = httpx.get(f"http://127.0.0.1:{port}/purchase-options/pro", timeout=5)
    finally:
        stripe.stop()

    refused = [line for line in gw.log().splitlines() if "refused the API key" in line]
    assert len(refused) == 1
    assert " ERROR " in refused[0]
    assert "GATEWAY_STRIPE__SECRET_KEY" in refused[0]
    assert "sk_test_revoked" not in gw.log()
    assert options.status_code == 200


@pytest.mark.db
@pytest.mark.parametrize("sender_in_serve", [True, False])
async def test_app_runs_the_mail_sender_only_when_configured(
    db_url: str,
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
    sender_in_serve: bool,
) -> None:
    fake = FakeProvider()
    settings = settings_factory(
        database_url=db_url, mail={"poll_seconds": 0.05, "sender_in_serve": sender_in_serve}
    )
    app = create_app(settings, catalog=catalog, providers={fake.name: fake}, run_migrations=False)
    async with running(app) as client:
        order = await new_order(catalog)
        await deliver(client, fake, event(order))
        await asyncio.sleep(0.5)
        email = await OutboxEmail.get(order_id=order.id)

    assert email.status is (EmailStatus.SENT if sender_in_serve else EmailStatus.PENDING)


@pytest.mark.db
@pytest.mark.slow
def test_sandbox_command_sells_with_both_fakes(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path)
    base = sandbox.url
    with sandbox as box:
        options = httpx.get(f"{base}/purchase-options/pro", timeout=5).json()
        bought = {}
        for provider in ("stripe", "btcpay"):
            resp = httpx.post(
                f"{base}/checkout/{provider}/pro", json={"email": "b@example.com"}, timeout=10
            )
            assert resp.status_code == 201, box.log()
            bought[provider] = resp.json()
        session = bought["stripe"]["checkout_url"].rsplit("/", 1)[1]
        invoice = bought["btcpay"]["checkout_url"].rstrip("/").rsplit("/", 1)[1]
        paid_card = httpx.post(
            f"http://127.0.0.1:{sandbox.stripe}/_fake/sessions/{session}/complete", timeout=30
        )
        paid_btc = httpx.post(
            f"http://127.0.0.1:{sandbox.btcpay}/_fake/invoices/{invoice}/pay", timeout=30
        )
        pages = {p: httpx.get(b["status_url"], timeout=5).json() for p, b in bought.items()}

    assert [o["provider"] for o in options["options"]] == ["btcpay", "stripe"]
    assert paid_card.status_code == paid_btc.status_code == 200
    assert pages["stripe"]["status"] == pages["btcpay"]["status"] == "settled", box.log()
    assert pages["stripe"]["license"]["key"] != pages["btcpay"]["license"]["key"]


@pytest.mark.db
@pytest.mark.slow
def test_simulate_sandbox_settles_orders_of_a_running_sandbox_from_a_bare_shell(
    tmp_path: Path,
) -> None:
    # given `checkout-gateway sandbox` running, and a second shell with no GATEWAY_ secrets
    ports = [free_port() for _ in range(3)]
    base = f"http://127.0.0.1:{ports[0]}"
    args = ["sandbox", "--port", str(ports[0]), "--stripe-port", str(ports[1])]
    args += ["--btcpay-port", str(ports[2])]
    shell = clean_env(GATEWAY_BTCPAY__URL=f"http://127.0.0.1:{ports[2]}")
    simulate = [PYTHON, "-m", "gateway", "simulate", "settle"]
    with Process(
        [PYTHON, "-m", "gateway", *args],
        log=tmp_path / "sandbox.log",
        cwd=tmp_path,
        env=clean_env(),
    ) as box:
        box.wait_http(f"{base}/readyz")
        bought = {
            provider: httpx.post(
                f"{base}/checkout/{provider}/pro", json={"email": "s@example.com"}, timeout=10
            ).json()
            for provider in ("stripe", "btcpay")
        }

        # when the seller simulates a settle of each order with --sandbox
        runs = {
            provider: subprocess.run(
                [*simulate, order["order_id"], "--url", base, "--sandbox"],
                cwd=tmp_path,
                env=shell,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            for provider, order in bought.items()
        }
        pages = {p: httpx.get(b["status_url"], timeout=5).json() for p, b in bought.items()}

    # then both are signed with the sandbox's secrets and settle, each with a key
    for provider, run in runs.items():
        assert run.returncode == 0, (provider, run.stderr)
        assert '"result":"applied"' in run.stdout
        assert f"order status: {base}/orders/{bought[provider]['order_id']}?token=" in run.stdout
        assert pages[provider]["status"] == "settled", box.log()
        assert pages[provider]["license"]["key"]


def _operations_command_spans() -> list[str]:
    """The code spans of the first column of the "Command line" table in docs/operations.md."""
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    section = text.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    spans = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = re.split(r"(?<!\\)\|", line)[1]
            spans += re.findall(r"`([^`]+)`", first_cell)
    return spans


def _span_commands(span: str) -> tuple[list[tuple[str, ...]], set[str]]:
    """The command paths one span names (`keys generate\\|rotate` is two) and its options."""
    tokens = span.replace("\\|", "|").split()
    command: click.Command = cli
    paths: list[tuple[str, ...]] = [()]
    for token in tokens:
        alternatives = token.split("|")
        if not isinstance(command, click.Group) or not all(
            a in _subcommands(command) for a in alternatives
        ):
            break
        paths = [(*p, a) for p in paths for a in alternatives]
        command = _subcommands(command)[alternatives[0]]
    claimed = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", span))
    return paths, claimed


def _command(path: tuple[str, ...]) -> click.Command:
    sub: click.Command = cli
    for name in path:
        assert isinstance(sub, click.Group)
        sub = _subcommands(sub)[name]
    return sub


def test_every_command_and_option_in_the_operations_table_exists() -> None:
    spans = _operations_command_spans()
    assert len(spans) > 20
    for span in spans:
        paths, claimed = _span_commands(span)
        for path in paths:
            sub = _command(path)
            offered = {opt for param in sub.params for opt in param.opts}
            assert path, span
            assert claimed <= offered, (span, path, sorted(claimed - offered))


def test_every_command_and_option_has_a_row_in_the_operations_table() -> None:
    # the reverse: a command or option added to the CLI is documented in the same change
    documented: dict[tuple[str, ...], set[str]] = {}
    for span in _operations_command_spans():
        paths, claimed = _span_commands(span)
        for path in paths:
            documented.setdefault(path, set()).update(claimed)
    leaves = [p for p in _commands(cli) if not isinstance(_command(p), click.Group)]

    assert len(leaves) > 20
    for path in leaves:
        options = {
            opt
            for param in _command(path).params
            if isinstance(param, click.Option)
            for opt in param.opts
            if opt.startswith("--")
        }
        assert path in documented, f"`{' '.join(path)}` has no row in docs/operations.md"
        assert options <= documented[path], (path, sorted(options - documented[path]))
