"""`checkout-gateway` / `python -m gateway`: serve, migrate, and operator commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from config.catalog import CatalogError
from config.settings import SettingsError, load_settings

log = logging.getLogger("gateway")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    settings = load_settings()
    _setup_logging(settings.log_level)
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower())
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from gateway import db

    settings = load_settings()
    _setup_logging(settings.log_level)
    asyncio.run(db.migrate(settings.resolved_database_url))
    log.info("database is up to date: %s", settings.resolved_database_url.split("@")[-1])
    return 0


def _btcpay_pair(args: argparse.Namespace) -> int:
    from providers.btcpay_legacy import PairingError, pair_legacy
    from providers.errors import ProviderError

    # Pairing comes before the legacy provider can be enabled, so don't let a not-yet-
    # paired `enabled = true` stop the command that fixes it.
    settings = load_settings(btcpay={"enabled": False})
    _setup_logging(settings.log_level)
    key_file, token_file = settings.btcpay.legacy_paths(settings.data_dir)
    host = args.host or settings.btcpay.url
    if not host:
        print("checkout-gateway: --host (or GATEWAY_BTCPAY__URL) is required", file=sys.stderr)
        return 2
    try:
        paired = pair_legacy(host, args.code, key_file, token_file, force=args.force)
    except (PairingError, ProviderError) as exc:
        print(f"checkout-gateway: pairing failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"paired with {host} ({paired.facade} facade, client id {paired.client_id}).\n"
        f"private key: {paired.key_file} (mode 0600)\n"
        f"token:       {paired.token_file} (mode 0600)\n"
        f"set GATEWAY_BTCPAY__MODE=legacy and GATEWAY_BTCPAY__URL={host} to use it."
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="checkout-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=_serve)
    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=_migrate)
    pair = sub.add_parser(
        "btcpay-pair",
        help="pair with BTCPay's legacy API (code from Store > Settings > Access Tokens)",
    )
    pair.add_argument("--host", help="BTCPay base URL (default: GATEWAY_BTCPAY__URL)")
    pair.add_argument("--code", required=True, help="the 7-character pairing code")
    pair.add_argument("--force", action="store_true", help="replace an existing key/token")
    pair.set_defaults(func=_btcpay_pair)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except (SettingsError, CatalogError) as exc:
        print(f"checkout-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
