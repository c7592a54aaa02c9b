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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="checkout-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=_serve)
    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=_migrate)
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
