"""A real SMTP relay on 127.0.0.1 (aiosmtpd) for the outbox tests, started and always stopped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.procs import free_port


@contextlib.contextmanager
def serving_relay(handler: Any, controller: type[Controller] = Controller) -> Iterator[int]:
    """Run `handler` as a relay on a free port (yielded) until the block ends."""
    port = free_port()
    running = controller(handler, hostname="127.0.0.1", port=port)
    running.start()
    try:
        yield port
    finally:
        running.stop()
