"""The Stripe payload shapes we read, parsed once at the boundary (pydantic, strict).

A signed payload is still data: an `api_version` that is a list, `metadata` that is a string,
an event id longer than any column, an id with `/` or `%2e` that would change an API path.
Parsing here turns each of those into `WebhookPayloadError` (answered 400) or "not ours"
(ignored), so nothing past this module meets an unexpected type. Only the fields the gateway
uses are declared; everything else Stripe sends is ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from providers.errors import WebhookPayloadError

# Stripe object ids: a lower-case prefix, `_`, then letters, digits and `_` (cs_test_a1B2…).
# Checked before an id goes into an API path, so it can never name another resource.
STRIPE_ID_RE = re.compile(r"[a-z]{2,8}_[A-Za-z0-9_]{1,200}")
# Anchored: pydantic's `pattern` is a search, so unanchored it let "cs_x\x00" or "../cs_x"
# through (a NUL that PostgreSQL refuses with an error Stripe would retry for days).
StripeId = Annotated[str, StringConstraints(pattern=f"^{STRIPE_ID_RE.pattern}$", max_length=255)]
EventId = Annotated[str, StringConstraints(pattern=r"^evt_[A-Za-z0-9_]{1,200}$")]
# Short printable text (statuses, reasons): a dispute reason becomes a license's revoke
# reason, and PostgreSQL refuses NUL in text.
Text = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]


def is_stripe_id(value: object, prefix: str | None = None) -> bool:
    """True for a well-formed Stripe id (with `prefix`, e.g. "cs", when given)."""
    if not isinstance(value, str) or STRIPE_ID_RE.fullmatch(value) is None:
        return False
    return prefix is None or value.startswith(prefix + "_")


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class _Data(_Shape):
    object: dict[str, Any]


class EventEnvelope(_Shape):
    id: EventId
    object: str
    type: Annotated[str, StringConstraints(max_length=100)]
    livemode: bool
    created: Annotated[int, Field(ge=0, le=2**40)]
    api_version: Text | None = None
    data: _Data


def _expandable(value: Any) -> str | None:
    """An expandable field is an id string or the expanded object carrying `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if is_stripe_id(value) else None


def _metadata_order_id(metadata: Any) -> str | None:
    # Only our own metadata counts: `client_reference_id` can be set by anyone who opens a
    # Payment Link of the same account (`?client_reference_id=`). Whether the id has our
    # shape is the gateway's call (providers.ids.is_order_id), made before any query.
    value = metadata.get("order_id") if isinstance(metadata, dict) else None
    if isinstance(value, str) and 0 < len(value) <= 255 and value.isprintable():
        return value
    return None


class _Object(_Shape):
    id: StripeId
    metadata: Any = None
    payment_intent: Any = None

    @property
    def order_id(self) -> str | None:
        return _metadata_order_id(self.metadata)

    @property
    def intent_id(self) -> str | None:
        return _expandable(self.payment_intent)


class Session(_Object):
    mode: Text | None = None
    status: Text | None = None
    payment_status: Text | None = None
    amount_total: int | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z]{3}$")] | None = None


class Charge(_Object):
    amount: int
    amount_refunded: int = 0
    refunded: bool = False


class Dispute(_Object):
    charge: Any = None
    reason: Text | None = None
    status: Text | None = None

    @property
    def charge_id(self) -> str | None:
        return _expandable(self.charge)


class Refund(_Object):
    charge: Any = None
    status: Text | None = None

    @property
    def charge_id(self) -> str | None:
        return _expandable(self.charge)


class Intent(_Object):
    pass


T = TypeVar("T", bound=_Shape)


def parse(shape: type[T], data: Any, what: str) -> T:
    """`data` as `shape`, or `WebhookPayloadError` naming what was wrong."""
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise WebhookPayloadError(f"Stripe {what}: {where}: {first['msg']}") from exc
