"""Log filters: no status token in access logs, the request id on every record; and the
switch that keeps the outbox sender out of `serve`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from config.catalog import Catalog
from config.settings import MailSettings, Settings
from gateway.app import create_app
from gateway.ops.context import request_id_var
from gateway.ops.logs import AccessLogTokenFilter, RequestIdFilter, redact_path
from sandbox.provider import FakeProvider
from tests.support.app import running


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/orders/ord_0123?token=s3cret", "/orders/ord_0123?[redacted]"),
        ("/orders/ord_0123?x=1&token=s3cret", "/orders/ord_0123?[redacted]"),
        ("/healthz?token=s3cret&a=1", "/healthz?token=[redacted]&a=1"),
        ("/x?a=1&status_token=s3cret", "/x?a=1&status_token=[redacted]"),
        ("/x?a=1", "/x?a=1"),
        ("/orders/ord_0123", "/orders/ord_0123"),
    ],
)
def test_access_log_path_never_keeps_a_token(path: str, logged: str) -> None:
    assert redact_path(path) == logged


def test_access_log_filter_rewrites_uvicorns_path_argument() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/orders/ord_1?token=s3cret", "1.1", 200),
        None,
    )

    assert AccessLogTokenFilter().filter(record)

    assert "s3cret" not in record.getMessage()
    assert "/orders/ord_1?[redacted]" in record.getMessage()


def test_every_record_carries_the_request_id_of_its_request() -> None:
    record = logging.LogRecord("gateway", logging.INFO, __file__, 1, "hello", None, None)
    token = request_id_var.set("req-12345678")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)

    assert getattr(record, "request_id", None) == "req-12345678"


@pytest.mark.parametrize("in_serve", [True, False])
async def test_sender_in_serve_switch_decides_whether_the_app_runs_a_sender(
    db_url: str,
    settings_factory: Callable[..., Settings],
    catalog: Catalog,
    in_serve: bool,
) -> None:
    fake = FakeProvider()
    settings = settings_factory(
        database_url=db_url, mail=MailSettings(sender_in_serve=in_serve, poll_seconds=0.1)
    )
    app = create_app(settings, catalog=catalog, providers={fake.name: fake}, run_migrations=False)
    async with running(app):
        names = {task.get_name() for task in asyncio.all_tasks()}

    assert ("outbox-mailer" in names) is in_serve


@pytest.mark.parametrize(
    ("level", "orm"),
    [("INFO", logging.WARNING), ("DEBUG", logging.DEBUG), ("ERROR", logging.ERROR)],
)
def test_the_orm_logs_no_info_line_but_follows_debug_and_stricter_levels(
    level: str, orm: int
) -> None:
    from logging.config import dictConfig

    from gateway.ops.logs import setup_logging, uvicorn_log_config

    touched = [logging.getLogger(n) for n in ("", "tortoise", "uvicorn", "uvicorn.error")]
    touched.append(logging.getLogger("uvicorn.access"))
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in touched]
    tortoise = logging.getLogger("tortoise")
    try:
        setup_logging(level)
        in_the_cli = tortoise.getEffectiveLevel()
        dictConfig(uvicorn_log_config(level))  # what each `serve` worker installs
        in_a_worker = tortoise.getEffectiveLevel()
    finally:
        for logger, handlers, was, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(was)
            logger.propagate = propagate

    assert in_the_cli == in_a_worker == orm
