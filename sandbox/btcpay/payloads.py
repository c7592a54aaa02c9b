"""BTCPay's JSON shapes for the fake: invoices (Greenfield and legacy BitPay), webhook
deliveries written like BTCPay's Newtonsoft JSON, BTCPay-style ids, and the BitId checks
(client id from a public key, `X-Signature` verification) behind the legacy API.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ecdsa import BadSignatureError, SECP256k1, VerifyingKey
from ecdsa.util import sigdecode_der

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_LEGACY_STATUS = {
    "New": "new",
    "Processing": "paid",
    "Settled": "complete",
    "Expired": "expired",
    "Invalid": "invalid",
}
_LEGACY_EXCEPTION: dict[str, Any] = {
    "None": False,
    "PaidLate": "paidLater",
    "PaidPartial": "paidPartial",
    "PaidOver": "paidOver",
    "Marked": "marked",
    "Invalid": "invalid",
}


def new_id(length: int = 22) -> str:
    return "".join(secrets.choice(BASE58) for _ in range(length))


def newtonsoft_json(obj: Any) -> bytes:
    """JSON as BTCPay's Newtonsoft `Formatting.Indented` writes it: 2 spaces, UTF-8, no BOM."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")


def sin_from_public_key(compressed_hex: str) -> str:
    """The BitId client id (SIN) BTCPay derives from a compressed secp256k1 public key."""
    sha = hashlib.sha256(bytes.fromhex(compressed_hex)).digest()
    version = b"\x0f\x02" + hashlib.new("ripemd160", sha).digest()
    checksum = hashlib.sha256(hashlib.sha256(version).digest()).digest()[:4]
    number = int.from_bytes(version + checksum, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = BASE58[rem] + out
    return out


def verify_bitid(message: str, identity: str, signature: str) -> bool:
    """Check btcpay-python's `X-Signature` (hex DER ECDSA-SHA256) by `X-Identity`."""
    try:
        key = VerifyingKey.from_string(bytes.fromhex(identity), curve=SECP256k1)
        return bool(
            key.verify(
                bytes.fromhex(signature),
                message.encode(),
                hashfunc=hashlib.sha256,
                sigdecode=sigdecode_der,
            )
        )
    except (BadSignatureError, ValueError, AssertionError):
        return False


# Fake exchange rate, invoice currency per BTC: a round number so that a fiat amount with
# two or three decimals converts to whole satoshis and back without loss.
FAKE_RATE = Decimal(50000)
_SATOSHI = Decimal("0.00000001")


@dataclass(slots=True)
class FakePayment:
    """One payment to an invoice, with BTCPay's per-payment status.

    BTCPay counts a payment towards the invoice ("accounted") while it is `Processing` or
    `Settled` (`PaymentEntity.Accounted => Status is PaymentStatus.Settled or
    PaymentStatus.Processing`, BTCPayServer/Services/Invoices/InvoiceEntity.cs); only
    `Settled` has reached the store's confirmation policy. An RBF-replaced payment turns
    `Invalid` and is no longer listed (`onlyAccountedPayments=true` by default).
    """

    id: str
    method: str
    # In the invoice currency; the API shows it in BTC at FAKE_RATE.
    fiat: Decimal
    status: str
    received: int

    @property
    def btc(self) -> Decimal:
        return (self.fiat / FAKE_RATE).quantize(_SATOSHI)

    def model(self, destination: str) -> dict[str, Any]:
        """BTCPay's `Payment` schema (GreenfieldInvoiceController.ToPaymentModel)."""
        return {
            "id": self.id,
            "receivedDate": self.received,
            "value": str(self.btc),
            "fee": "0",
            "status": self.status,
            "destination": destination,
        }


@dataclass(slots=True)
class FakeInvoice:
    id: str
    store_id: str
    amount: Decimal | None
    currency: str
    metadata: dict[str, Any]
    checkout: dict[str, Any]
    created: int
    expiration: int
    status: str = "New"
    additional_status: str = "None"
    payments: list[FakePayment] = field(default_factory=list)
    # Pull payment ids of refunds the merchant made.
    refunds: list[str] = field(default_factory=list)
    notification_url: str | None = None

    @property
    def paid(self) -> Decimal:
        """What BTCPay reports as `paidAmount`: every accounted payment, settled or not."""
        accounted = (p.fiat for p in self.payments if p.status in ("Processing", "Settled"))
        return sum(accounted, Decimal(0))

    def payment_methods(self) -> list[dict[str, Any]]:
        """`GET .../invoices/{id}/payment-methods`: one entry per method, with its payments."""
        amount = self.amount if self.amount is not None else Decimal(0)
        total_btc = sum((p.btc for p in self.payments if p.status != "Invalid"), Decimal(0))
        out = []
        for method in self.checkout.get("paymentMethods") or ["BTC-CHAIN"]:
            mine = [p for p in self.payments if p.method == method and p.status != "Invalid"]
            destination = _destination(self.id, method)
            due_btc = (amount / FAKE_RATE).quantize(_SATOSHI)
            out.append(
                {
                    "paymentMethodId": method,
                    "currency": "BTC",
                    "destination": destination,
                    "paymentLink": f"bitcoin:{destination}",
                    "rate": str(FAKE_RATE),
                    "paymentMethodPaid": str(sum((p.btc for p in mine), Decimal(0))),
                    "totalPaid": str(total_btc),
                    "due": str(due_btc - total_btc),
                    "amount": str(due_btc),
                    "paymentMethodFee": "0",
                    "payments": [p.model(destination) for p in mine],
                    "activated": True,
                    "additionalData": {},
                }
            )
        return out

    def greenfield(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "storeId": self.store_id,
            "amount": str(self.amount if self.amount is not None else Decimal(0)),
            "paidAmount": str(self.paid),
            "currency": self.currency,
            "type": "Standard" if self.amount is not None else "TopUp",
            "checkoutLink": f"{base_url}/i/{self.id}",
            "createdTime": self.created,
            "expirationTime": self.expiration,
            "monitoringExpiration": self.expiration + 24 * 3600,
            "status": self.status,
            "additionalStatus": self.additional_status,
            "availableStatusesForManualMarking": (
                ["Settled", "Invalid"] if self.status in ("Expired", "Invalid") else []
            ),
            "archived": False,
            "metadata": self.metadata,
            # Unset options are left out: the spec puts `nullable` beside allOf-$refs, which
            # OpenAPI 3.0 validators (rightly) read as "null not allowed".
            "checkout": {k: v for k, v in self.checkout.items() if v is not None},
            "receipt": {"enabled": True},
        }

    def legacy(self, base_url: str, *, status: str | None = None) -> dict[str, Any]:
        amount = self.amount or Decimal(0)
        buyer_email = self.metadata.get("buyerEmail")
        return {
            "id": self.id,
            "url": f"{base_url}/invoice?id={self.id}",
            "posData": None,
            "status": status or _LEGACY_STATUS[self.status],
            # .NET decimals serialise as JSON numbers; float() only renders the literal.
            "price": float(amount) if amount != amount.to_integral_value() else int(amount),
            "currency": self.currency,
            "itemDesc": self.metadata.get("itemDesc"),
            "itemCode": self.metadata.get("itemCode"),
            "orderId": self.metadata.get("orderId"),
            "invoiceTime": self.created * 1000,
            "expirationTime": self.expiration * 1000,
            "currentTime": int(time.time() * 1000),
            "exceptionStatus": _LEGACY_EXCEPTION[self.additional_status],
            "buyer": {"email": buyer_email},
            "buyerFields": {"buyerEmail": buyer_email} if buyer_email else None,
            "amountPaid": str(self.paid),
        }


def _destination(invoice_id: str, method: str) -> str:
    if method.endswith("-LN"):
        return f"lnbcrt1fake{invoice_id.lower()}"
    return f"bcrt1qfake{invoice_id.lower()}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery: the exact bytes and headers BTCPay would POST."""

    event_type: str
    invoice_id: str
    delivery_id: str
    original_delivery_id: str
    body: bytes
    headers: dict[str, str]
