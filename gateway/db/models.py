"""Tortoise ORM models. Every lookup the hot paths make has an index or a unique key.

Exactly-once rests on three unique constraints, not on locks held in one process:
`InboxEvent(provider, dedupe_key)`, `License.order` (one license per order) and
`OutboxEmail(order, kind)` (one email of each kind per order).
"""

from __future__ import annotations

import secrets
from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class OrderStatus(StrEnum):
    CREATED = "created"
    PENDING = "pending"
    SETTLED = "settled"
    FAILED = "failed"
    REVERSED = "reversed"
    # Money arrived that a human must judge (late payment under the review policy, ...).
    NEEDS_REVIEW = "needs_review"


class InboxOutcome(StrEnum):
    APPLIED = "applied"  # changed the order (or confirmed its state)
    NOOP = "noop"  # verified and recorded, but nothing to change (e.g. pending after settle)
    PARKED = "parked"  # needs a human: amount/currency/provider mismatch, unknown order


class LicenseStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class EmailStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # gave up after max attempts; visible to the operator


def new_order_id() -> str:
    """Our order id shape (`providers/ids.py` checks it when a provider echoes it back)."""
    return "ord_" + secrets.token_hex(10)


def new_status_token() -> str:
    """The capability token of an order's status URL."""
    return secrets.token_urlsafe(24)


class Order(Model):
    id = fields.CharField(max_length=40, primary_key=True)
    product_id = fields.CharField(max_length=64)
    amount_minor = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    provider = fields.CharField(max_length=16)
    provider_ref = fields.CharField(max_length=255, null=True)
    payment_ref = fields.CharField(max_length=255, null=True, db_index=True)
    buyer_email = fields.CharField(max_length=320)
    # Paid so far while not settled (a partial bitcoin payment), in minor units.
    paid_minor = fields.BigIntField(null=True)
    status = fields.CharEnumField(OrderStatus, max_length=16, default=OrderStatus.CREATED)
    # Capability token for GET /orders/{id}?token=. Kept in clear: it guards the same rows
    # the license key sits in, so hashing it would protect nothing; an idempotent checkout
    # retry must be able to hand the same status URL back.
    status_token = fields.CharField(max_length=64)
    checkout_url = fields.TextField(null=True)
    idempotency_key = fields.CharField(max_length=255, null=True, unique=True)
    notes = fields.TextField(default="")
    review_reason = fields.TextField(null=True)
    # Who may call the provider for this order's checkout right now: set by the one request
    # whose conditional update won, until it is done (or the lease runs out after a crash).
    checkout_lease_until = fields.DatetimeField(null=True)
    # Reconciler: when this order may next be polled (also its lease while being polled),
    # and how many polls in a row found the provider unreachable (for the back-off).
    recheck_at = fields.DatetimeField(null=True)
    recheck_failures = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    settled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "orders"
        unique_together = (("provider", "provider_ref"),)
        indexes = (("status", "updated_at"),)

    def status_url(self, public_url: str) -> str:
        """The buyer's status page: the one capability URL every message and page links to."""
        return f"{public_url}/orders/{self.id}?token={self.status_token}"


class InboxEvent(Model):
    id = fields.BigIntField(primary_key=True)
    provider = fields.CharField(max_length=16)
    dedupe_key = fields.CharField(max_length=255)
    kind = fields.CharField(max_length=16)
    order_id = fields.CharField(max_length=40, null=True, db_index=True)
    provider_ref = fields.CharField(max_length=255, null=True)
    payload = fields.TextField()
    outcome = fields.CharEnumField(InboxOutcome, max_length=16)
    detail = fields.TextField(default="")
    received_at = fields.DatetimeField(auto_now_add=True)
    handled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "inbox_events"
        unique_together = (("provider", "dedupe_key"),)
        indexes = (("outcome", "received_at"),)


class License(Model):
    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=32, unique=True)
    order: fields.OneToOneRelation[Order] = fields.OneToOneField(
        "models.Order", related_name="license", on_delete=fields.RESTRICT
    )
    product_id = fields.CharField(max_length=64)
    tier = fields.CharField(max_length=64)
    addons: fields.Field[list[str]] = fields.JSONField(default=list)
    seat_limit = fields.IntField()
    buyer_email = fields.CharField(max_length=320)
    status = fields.CharEnumField(LicenseStatus, max_length=16, default=LicenseStatus.ACTIVE)
    revoked_at = fields.DatetimeField(null=True)
    revoke_reason = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "licenses"


class Activation(Model):
    id = fields.BigIntField(primary_key=True)
    license: fields.ForeignKeyRelation[License] = fields.ForeignKeyField(
        "models.License", related_name="activations", on_delete=fields.CASCADE
    )
    fingerprint = fields.CharField(max_length=128)
    label = fields.CharField(max_length=128, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    last_seen_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "license_activations"
        unique_together = (("license", "fingerprint"),)


class OutboxEmail(Model):
    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="emails", on_delete=fields.RESTRICT
    )
    kind = fields.CharField(max_length=32)
    to_address = fields.CharField(max_length=320)
    subject = fields.CharField(max_length=255)
    body_text = fields.TextField()
    body_html = fields.TextField()
    status = fields.CharEnumField(EmailStatus, max_length=16, default=EmailStatus.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_emails"
        unique_together = (("order", "kind"),)
        indexes = (("status", "next_attempt_at"),)
