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
    from gateway.logs import setup_logging

    setup_logging(level)


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


def _send_mail(args: argparse.Namespace) -> int:
    import signal

    from gateway import db
    from gateway.mailer import Mailer

    settings = load_settings()
    _setup_logging(settings.log_level)

    async def run() -> int:
        await db.open_db(settings)
        try:
            mailer = Mailer(settings)
            if args.once:
                result = await mailer.run_once()
                log.info(
                    "outbox: %d sent, %d failed, %d dead", result.sent, result.failed, result.dead
                )
                return 0
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            log.info("outbox sender running (%s backend); Ctrl-C stops", settings.mail_backend)
            await mailer.run_forever(stop)
            return 0
        finally:
            await db.close_db()

    return asyncio.run(run())


def _review(_: argparse.Namespace) -> int:
    from gateway import db
    from gateway.models import InboxEvent, InboxOutcome

    settings = load_settings()
    _setup_logging(settings.log_level)

    async def run() -> list[InboxEvent]:
        await db.open_db(settings)
        try:
            return await InboxEvent.filter(outcome=InboxOutcome.PARKED).order_by(
                "received_at", "id"
            )
        finally:
            await db.close_db()

    parked = asyncio.run(run())
    if not parked:
        print("no parked events")
        return 0
    print("received_at\tprovider\torder_id\tkind\tevent\treason")
    for event in parked:
        print(
            "\t".join(
                [
                    event.received_at.isoformat(timespec="seconds"),
                    event.provider,
                    event.order_id or "-",
                    event.kind,
                    event.dedupe_key,
                    event.detail.replace("\n", " "),
                ]
            )
        )
    print(f"{len(parked)} parked event(s)")
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
    send_mail = sub.add_parser("send-mail", help="deliver queued license emails (outbox)")
    send_mail.add_argument("--once", action="store_true", help="one round, then exit")
    send_mail.set_defaults(func=_send_mail)
    review = sub.add_parser("review", help="list webhook events parked for a human")
    review.set_defaults(func=_review)
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
