"""Builders of real-shaped Stripe objects for the fake: ids, events, checkout sessions,
payment intents, charges and disputes, with the fields of Stripe's current fixtures.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

import stripe

API_VERSION = stripe._api_version._ApiVersion.CURRENT


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def event_object(
    type_: str,
    obj: dict[str, Any],
    *,
    created: int,
    livemode: bool,
    request_id: str | None,
) -> dict[str, Any]:
    """A `stripe.Event` of `type_` carrying a snapshot of `obj`."""
    return {
        "id": new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {"object": copy.deepcopy(obj)},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": None},
        "type": type_,
    }


def session_object(
    *,
    sid: str,
    params: dict[str, Any],
    amount: int,
    currency: str | None,
    created: int,
    expires_at: int,
    livemode: bool,
    url: str,
) -> dict[str, Any]:
    return {
        "id": sid,
        "object": "checkout.session",
        "adaptive_pricing": None,
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id"),
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_account": None,
        "customer_creation": "if_required",
        "customer_details": None,
        "customer_email": params.get("customer_email"),
        "discounts": [],
        "expires_at": expires_at,
        "integration_identifier": None,
        "invoice": None,
        "invoice_creation": None,
        "livemode": livemode,
        "locale": None,
        "managed_payments": None,
        "metadata": dict(params.get("metadata") or {}),
        "mode": params["mode"],
        "origin_context": None,
        # Null until the session is confirmed (API 2022-08-01 and later).
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": params.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "url": url,
        "wallet_options": None,
    }


def payment_intent_object(
    *,
    amount: int,
    currency: str,
    metadata: dict[str, str],
    status: str,
    created: int,
    livemode: bool,
) -> dict[str, Any]:
    pid = new_id("pi")
    return {
        "id": pid,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pid}_secret_{secrets.token_hex(8)}",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": None,
        "customer_account": None,
        "description": None,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": livemode,
        "managed_payments": None,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": new_id("pm"),
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def charge_object(intent: dict[str, Any], *, created: int, livemode: bool) -> dict[str, Any]:
    cid = new_id("ch")
    return {
        "id": cid,
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": intent["amount"],
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": new_id("txn"),
        "billing_details": {
            "address": None,
            "email": None,
            "name": "Jenny Rosen",
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "CHECKOUT GATEWAY",
        "captured": True,
        "created": created,
        "currency": intent["currency"],
        "customer": None,
        "description": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": livemode,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": intent["id"],
        "payment_method": intent["payment_method"],
        "payment_method_details": {
            "card": {"brand": "visa", "exp_month": 8, "exp_year": 2030, "last4": "4242"},
            "type": "card",
        },
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "refunds": {
            "data": [],
            "has_more": False,
            "object": "list",
            "url": f"/v1/charges/{cid}/refunds",
        },
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def dispute_object(
    charge: dict[str, Any], *, reason: str, created: int, livemode: bool
) -> dict[str, Any]:
    evidence_fields = (
        "access_activity_log", "billing_address", "cancellation_policy",
        "cancellation_policy_disclosure", "cancellation_rebuttal", "customer_communication",
        "customer_email_address", "customer_name", "customer_purchase_ip", "customer_signature",
        "duplicate_charge_documentation", "duplicate_charge_explanation", "duplicate_charge_id",
        "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
        "refund_refusal_explanation", "service_date", "service_documentation",
        "shipping_address", "shipping_carrier", "shipping_date", "shipping_documentation",
        "shipping_tracking_number", "uncategorized_file", "uncategorized_text",
    )  # fmt: skip
    return {
        "id": new_id("dp"),
        "object": "dispute",
        "amount": charge["amount"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {**dict.fromkeys(evidence_fields), "enhanced_evidence": {}},
        "evidence_details": {
            "due_by": created + 7 * 24 * 3600,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": livemode,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4"},
            "type": "card",
        },
        "reason": reason,
        "status": "needs_response",
    }


def refund_object(charge: dict[str, Any], *, amount: int, created: int) -> dict[str, Any]:
    """A succeeded refund of `amount` on `charge` (Stripe's `refund` object; its fields are
    those of `components.schemas.refund` in ../shared/specs/stripe/spec3.json)."""
    return {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": None,
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "failure_reason": None,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "reason": None,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
