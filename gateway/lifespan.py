"""The app's lifespan: the database opened before the first request, the background loops
(outbox sender, reconciler) started with it, and everything stopped in order at shutdown:
the loops first (while the database is still open), then the limiter, the providers the app
built itself, and the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette

from gateway.db import database as db
from gateway.mail.outbox import Mailer
from gateway.ops.metrics import access_note
from gateway.payments.reconciler import Reconciler
from gateway.state import AppState

log = logging.getLogger(__name__)

# A reconciler poll in flight ends within the provider's own timeout.
RECONCILER_STOP_SECONDS = 30.0

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def lifespan(
    state: AppState,
    *,
    run_migrations: bool,
    run_mailer: bool,
    run_reconciler: bool,
    owns_providers: bool,
) -> Lifespan:
    """The lifespan of an app serving `state`; `owns_providers`: close them at shutdown."""

    @contextlib.asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        settings = state.settings
        if note := access_note(settings):
            log.info("%s", note)
        await db.open_db(settings, run_migrations=run_migrations)
        stop = asyncio.Event()
        sender = (
            asyncio.create_task(Mailer(settings).run_forever(stop), name="outbox-mailer")
            if run_mailer
            else None
        )
        reconciler = (
            asyncio.create_task(
                Reconciler(settings, state.providers, state.applier).run_forever(stop),
                name="reconciler",
            )
            if run_reconciler and state.providers
            else None
        )
        try:
            yield
        finally:
            stop.set()
            await _finish(reconciler, RECONCILER_STOP_SECONDS, "reconciler")
            # Stopped before the DB closes; a send in flight gets a moment to finish.
            await _finish(sender, settings.smtp.timeout_seconds, "outbox mailer")
            await state.limiter.aclose()
            if owns_providers:
                for provider in state.providers.values():
                    await provider.aclose()
            await db.close_db()

    return run


async def _finish(task: asyncio.Task[None] | None, seconds: float, what: str) -> None:
    if task is None:
        return
    try:
        await asyncio.wait_for(task, timeout=seconds)
    except TimeoutError:
        log.warning("%s did not stop in time; cancelled", what)
