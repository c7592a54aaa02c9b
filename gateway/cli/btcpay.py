"""`btcpay pair`: pair with BTCPay's legacy (BitPay-compatible) API."""

from __future__ import annotations

import click

from gateway.cli.common import settings_and_logging
from providers.btcpay.legacy import PairingError, pair_legacy
from providers.errors import ProviderError


@click.group()
def btcpay() -> None:
    """BTCPay Server helpers."""


@btcpay.command("pair")
@click.option("--host", help="BTCPay base URL (default: GATEWAY_BTCPAY__URL)")
@click.option("--code", required=True, help="the 7-character pairing code")
@click.option("--force", is_flag=True, help="replace an existing key/token")
def pair(host: str | None, code: str, force: bool) -> None:
    """Pair legacy mode (code from Store > Settings > Access Tokens)."""
    # Pairing comes before the legacy provider can be enabled, so don't let a not-yet-
    # paired `enabled = true` stop the command that fixes it.
    settings = settings_and_logging(btcpay={"enabled": False})
    key_file, token_file = settings.btcpay.legacy_paths(settings.data_dir)
    host = host or settings.btcpay.url
    if not host:
        raise click.UsageError("--host (or GATEWAY_BTCPAY__URL) is required")
    try:
        paired = pair_legacy(host, code, key_file, token_file, force=force)
    except (PairingError, ProviderError) as exc:
        raise click.ClickException(f"pairing failed: {exc}") from exc
    click.echo(
        f"paired with {host} ({paired.facade} facade, client id {paired.client_id}).\n"
        f"private key: {paired.key_file} (mode 0600)\n"
        f"token:       {paired.token_file} (mode 0600)\n"
        f"set GATEWAY_BTCPAY__MODE=legacy and GATEWAY_BTCPAY__URL={host} to use it."
    )
