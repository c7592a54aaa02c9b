"""The shapes of ids we mint. Anything else is "not ours" before it reaches a query.

Checked at the edges (URLs, provider payloads) so a foreign or hostile id (too long for the
column, NUL bytes, path tricks) is answered 404 / ignored instead of failing in the driver.
"""

from __future__ import annotations

import re

ORDER_ID_RE = re.compile(r"ord_[0-9a-f]{20}")


def is_order_id(value: object) -> bool:
    """True for an id in the exact shape `ord_` + 20 lower-case hex digits."""
    return isinstance(value, str) and ORDER_ID_RE.fullmatch(value) is not None
