"""`checkout-gateway` / `python -m gateway`: one click entry point, one module per command
group, each imported only when its command runs (`LazyGroup`), so `--help` is instant and a
production install never imports the sandbox unless `sandbox` or `simulate` runs.

Commands parse options, call a service and print; what they do lives in the domains.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from config.catalog import CatalogError
from config.env import SettingsError
from gateway.cli.lazy import Lazy, LazyGroup

COMMANDS = {
    "btcpay": Lazy("gateway.cli.btcpay:btcpay", "BTCPay Server helpers."),
    "check-config": Lazy(
        "gateway.cli.check:check_config",
        "Load settings and catalog, ping the database and each enabled provider.",
    ),
    "keys": Lazy(
        "gateway.cli.keys:keys",
        "Signing keys for offline license tokens (published at /.well-known/jwks.json).",
    ),
    "licenses": Lazy(
        "gateway.cli.licenses:licenses",
        "Licenses: list, show, revoke, reinstate, resend the email, give one away (comp).",
    ),
    "migrate": Lazy(
        "gateway.cli.migrate:migrate", "Apply pending database migrations (idempotent)."
    ),
    "orders": Lazy(
        "gateway.cli.orders:orders",
        "Orders: list with filters, show one with its events, license and emails.",
    ),
    "outbox": Lazy(
        "gateway.cli.outbox:outbox", "Queued emails (license keys): list them, retry dead ones."
    ),
    "reconcile": Lazy(
        "gateway.cli.reconcile:reconcile",
        "Ask each provider once about orders its webhooks left unfinished.",
    ),
    "review": Lazy(
        "gateway.cli.review:review",
        "Orders in needs_review and parked events (amount/currency mismatch, unknown order, "
        "a late payment under the review policy, ...).",
    ),
    "sandbox": Lazy(
        "gateway.cli.sandbox:sandbox",
        "Run fake Stripe + fake BTCPay and a gateway using them, all on 127.0.0.1.",
    ),
    "send-mail": Lazy("gateway.cli.mail:send_mail", "Deliver queued license emails (the outbox)."),
    "serve": Lazy("gateway.cli.serve:serve", "Run the HTTP server (migrates the database first)."),
    "simulate": Lazy(
        "gateway.cli.simulate:simulate",
        "Send a signed settle/expire/refund webhook for ORDER_ID to a running gateway.",
    ),
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
def cli() -> None:
    """Self-hosted gateway that sells software licenses through BTCPay Server and Stripe."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 bad usage or configuration)."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="checkout-gateway",
            standalone_mode=False,
        )
    except (SettingsError, CatalogError) as exc:
        click.echo(f"checkout-gateway: configuration error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.UsageError as exc:
        # One line naming the command and what is wrong; `--help` has the rest.
        where = exc.ctx.command_path if exc.ctx is not None else "checkout-gateway"
        click.echo(f"{where}: {exc.format_message()} (see --help)", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0
