"""`checkout-gateway` / `python -m gateway`: one click entry point, one module per command group.

Each module registers its commands on `cli` (imported at the bottom); heavy imports (uvicorn,
Tortoise, providers) stay inside the commands so `--help` is instant.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from config.catalog import CatalogError
from config.settings import SettingsError


@click.group(
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


# Command modules register themselves on `cli`; imported last so they can import `cli`.
from gateway.cli import (  # noqa: E402
    btcpay,
    check,
    keys,
    licenses,
    mail,
    orders,
    outbox,
    reconcile,
    review,
    sandbox,
    serve,
    simulate,
)

__all__ = [
    "btcpay",
    "check",
    "cli",
    "keys",
    "licenses",
    "mail",
    "main",
    "orders",
    "outbox",
    "reconcile",
    "review",
    "sandbox",
    "serve",
    "simulate",
]

if __name__ == "__main__":
    sys.exit(main())
