"""BTCPay Server, legacy BitPay-compatible API through `btcpay-python` (pairing mode).

`btcpay-python` is synchronous `requests`, so every call runs in a worker thread and
never on the event loop; its sessions get a timeout it does not set itself. Legacy IPNs
are unsigned (BTCPay: "can be faked"), so an IPN body is only a hint naming an invoice:
the invoice is re-fetched with the signed client and only the fetched status counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import requests
from btcpay import BTCPayClient, crypto
from pydantic import ValidationError

from config.money import format_decimal
from config.settings import BtcpaySettings, SettingsError, env_name
from providers.base import CheckoutRequest, CheckoutSession
from providers.btcpay_events import settled_event
from providers.btcpay_shapes import LegacyIpn, is_invoice_id
from providers.errors import ProviderRejected, ProviderUnavailable, WebhookPayloadError
from providers.events import (
    Ignored,
    PaymentEvent,
    PaymentFailed,
    PaymentNeedsReview,
    PaymentPending,
    PaymentReversed,
    PaymentSettled,
    ProviderName,
)
from providers.ids import is_order_id

log = logging.getLogger(__name__)

T = TypeVar("T")
_PAIRING_CODE = re.compile(r"^[A-Za-z0-9]{7}$")
_DEFAULT_TIMEOUT = 20.0
# Threads for btcpay-python's blocking calls, per provider.
_LEGACY_THREADS = 4


class PairingError(ValueError):
    """Pairing cannot proceed (bad code, files already present)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyPairing:
    key_file: Path
    token_file: Path
    # The client id (SIN) BTCPay shows next to the token on the Access Tokens page.
    client_id: str
    facade: str


class _TimeoutSession(requests.Session):
    """`btcpay-python` never passes a timeout; a hung BTCPay must not pin a thread forever."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


def _client(host: str, pem: str, tokens: dict[str, str] | None, timeout: float) -> Any:
    client = BTCPayClient(host=host.rstrip("/"), pem=pem, tokens=tokens)
    session = _TimeoutSession(timeout)
    session.headers.update(client.s.headers)
    session.verify = client.s.verify
    client.s = session
    return client


_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s'\"]+", re.IGNORECASE)


def scrub(text: str, *secrets: str) -> str:
    """`text` without the merchant token: btcpay-python signs GETs with `?token=<merchant
    token>` in the URL, and requests' `raise_for_status()` quotes that URL in its message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


class _ScrubTokens(logging.Filter):
    """urllib3 logs every request line at DEBUG, `?token=<merchant token>` included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message.lower():
            record.msg, record.args = scrub(message), None
        return True


_URLLIB3_SCRUB = _ScrubTokens()


def _scrub_urllib3_logs() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if _URLLIB3_SCRUB not in logger.filters:
        logger.addFilter(_URLLIB3_SCRUB)


def _translate(exc: Exception, what: str, *secrets: str) -> Exception:
    """requests/btcpay-python errors -> our retriable/permanent errors, token scrubbed."""
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500 or status in (408, 429):
            return ProviderUnavailable(f"BTCPay answered {status} to {what}")
        detail = scrub(str(exc), *secrets)[:300]
        return ProviderRejected(f"BTCPay refused {what} ({status}): {detail}")
    if isinstance(exc, requests.RequestException):
        return ProviderUnavailable(f"BTCPay unreachable for {what}: {type(exc).__name__}")
    if isinstance(exc, ValueError | KeyError | IndexError | TypeError):
        detail = scrub(str(exc), *secrets)[:300]
        return ProviderRejected(f"BTCPay gave an unusable answer to {what}: {detail}")
    return exc


def _invoice_id_of(body: bytes) -> str | None:
    """The invoice id an IPN names, if it has the shape of one (unverified: IPNs are
    unsigned). Any body that is not such an IPN (not JSON, nested too deep, wrong types)
    names none."""
    try:
        invoice_id = LegacyIpn.model_validate_json(body).invoice_id
    except ValidationError:
        return None
    return invoice_id if is_invoice_id(invoice_id) else None


def _write_private(path: Path, data: str, *, force: bool) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        # An existing file overwritten with force keeps its old mode otherwise.
        os.fchmod(fd, 0o600)
        os.write(fd, data.encode("utf-8"))
    finally:
        os.close(fd)


def pair_legacy(
    host: str,
    pairing_code: str,
    key_file: Path,
    token_file: Path,
    *,
    force: bool = False,
    timeout: float = _DEFAULT_TIMEOUT,
) -> LegacyPairing:
    """Pair with BTCPay's legacy API: new private key + merchant token, both stored 0600.

    `pairing_code` is the 7-character code from Store → Settings → Access Tokens. Synchronous
    (call it from the CLI, or via a worker thread). Raises `PairingError`,
    `ProviderUnavailable` or `ProviderRejected`; writes nothing unless pairing succeeded.
    """
    code = pairing_code.strip()
    if not _PAIRING_CODE.match(code):
        raise PairingError("the pairing code must be exactly 7 letters or digits")
    if not force:
        present = [str(p) for p in (key_file, token_file) if p.exists()]
        if present:
            raise PairingError(
                f"refusing to overwrite {', '.join(present)} (pass force=True / --force)"
            )
    pem: str = crypto.generate_privkey()
    client = _client(host, pem, None, timeout)
    try:
        tokens: dict[str, str] = client.pair_client(code)
    except Exception as exc:
        raise _translate(exc, "pairing") from exc
    facade, token = next(iter(tokens.items()))
    _write_private(key_file, pem, force=force)
    _write_private(token_file, json.dumps({facade: token}) + "\n", force=force)
    log.info("btcpay legacy pairing stored key %s and %s token %s", key_file, facade, token_file)
    return LegacyPairing(
        key_file=key_file, token_file=token_file, client_id=client.client_id, facade=facade
    )


class BTCPayLegacyProvider:
    name = ProviderName.BTCPAY

    def __init__(self, settings: BtcpaySettings, *, data_dir: Path) -> None:
        if not settings.url:
            raise SettingsError(f"BTCPay legacy mode needs {env_name('btcpay', 'url')}")
        key_file, token_file = settings.legacy_paths(data_dir)
        try:
            pem = key_file.read_text(encoding="utf-8")
            tokens = json.loads(token_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(
                f"BTCPay legacy key/token unreadable ({key_file}, {token_file}): run "
                "`checkout-gateway btcpay pair`"
            ) from exc
        if not isinstance(tokens, dict) or "merchant" not in tokens:
            raise SettingsError(f"{token_file}: no merchant token; pair again")
        self._settings = settings
        self._token = str(tokens["merchant"])
        _scrub_urllib3_logs()
        self._client = _client(
            settings.url, pem, {"merchant": self._token}, settings.timeout_seconds
        )
        # Our own bounded pool: a flood of (unsigned) IPNs queues here instead of starving
        # the default executor every other blocking call in the process shares.
        self._executor = ThreadPoolExecutor(
            max_workers=_LEGACY_THREADS, thread_name_prefix="btcpay-legacy"
        )
        # One signed GET per invoice at a time; concurrent askers share its answer.
        self._fetching: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        log.info(
            "btcpay legacy mode: a payment after the invoice expired is NEVER settled "
            "automatically (the legacy API cannot show whether it confirmed); such orders "
            "go to review (late_payment=%s is not applied)",
            settings.late_payment,
        )

    async def _in_pool(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    async def _call(self, what: str, func: Callable[..., T], *args: Any) -> T:
        try:
            return await self._in_pool(func, *args)
        except Exception as exc:
            raise _translate(exc, what, self._token) from exc

    async def aclose(self) -> None:
        await self._in_pool(self._client.s.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def unverified_ref(self, body: bytes) -> str | None:
        """The invoice an IPN claims to be about, before anything is trusted or fetched:
        the webhook route drops IPNs for invoices it never created without a BTCPay call."""
        return _invoice_id_of(body)

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        payload = {
            # A decimal string; btcpay-python only float()-checks it, never sends a float.
            "price": format_decimal(req.amount_minor, req.currency),
            "currency": req.currency.upper(),
            "orderId": req.order_id,
            "itemDesc": req.description or req.product_name,
            "itemCode": req.product_id,
            "notificationURL": req.notification_url,
            "redirectURL": req.success_url,
            "fullNotifications": True,
            "buyer": {"email": req.buyer_email},
        }
        # create_invoice adds the token to the dict it is given; keep ours clean.
        invoice = await self._call("invoice creation", self._client.create_invoice, dict(payload))
        try:
            expires = invoice.get("expirationTime")
            session = CheckoutSession(
                provider_ref=str(invoice["id"]),
                checkout_url=str(invoice["url"]),
                expires_at=(
                    datetime.fromtimestamp(expires / 1000, UTC)
                    if isinstance(expires, int | float)
                    else None
                ),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProviderRejected("BTCPay returned an unreadable legacy invoice") from exc
        log.info(
            "btcpay legacy invoice %s created for order %s", session.provider_ref, req.order_id
        )
        return session

    async def fetch_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        if not is_invoice_id(invoice_id):
            raise WebhookPayloadError("not a BTCPay invoice id")
        pending = self._fetching.get(invoice_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_invoice(invoice_id))
            self._fetching[invoice_id] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(invoice_id, None))
        # shield: one caller going away must not cancel the fetch the others wait on.
        return await asyncio.shield(pending)

    async def _fetch_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        what = f"fetching invoice {invoice_id}"
        try:
            invoice = await self._in_pool(self._client.get_invoice, invoice_id)
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise _translate(exc, what, self._token) from exc
        except Exception as exc:
            raise _translate(exc, what, self._token) from exc
        if not isinstance(invoice, dict):
            raise ProviderUnavailable("BTCPay returned a non-object legacy invoice")
        return invoice

    async def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[PaymentEvent]:
        # Unsigned by design: nothing in the body is trusted beyond the invoice id.
        invoice_id = _invoice_id_of(body)
        if invoice_id is None:
            raise WebhookPayloadError("BTCPay IPN names no invoice id")
        invoice = await self.fetch_invoice(invoice_id)
        if invoice is None:
            return [
                Ignored(
                    provider=self.name, reason="IPN for an unknown invoice", provider_ref=invoice_id
                )
            ]
        event = self._decide(invoice_id, invoice)
        if event is None:
            return [
                Ignored(provider=self.name, reason="invoice not paid yet", provider_ref=invoice_id)
            ]
        if isinstance(event, PaymentFailed) and event.reason == "manually marked invalid":
            # Marking works on a complete invoice too (BitpayIPNSender sends MarkedInvalid):
            # the merchant withdrew the settlement, so a paid order's license is revoked.
            withdrawn = PaymentReversed(
                provider=self.name,
                provider_ref=invoice_id,
                order_id=event.order_id,
                occurred_at=event.occurred_at,
                payment_ref=invoice_id,
                dedupe_key=f"{invoice_id}:invalid:reversed",
                reason="manually marked invalid in BTCPay",
            )
            return [event, withdrawn]
        return [event]

    async def fetch_status(self, provider_ref: str) -> PaymentEvent | None:
        if not is_invoice_id(provider_ref):
            return None
        invoice = await self.fetch_invoice(provider_ref)
        return None if invoice is None else self._decide(provider_ref, invoice)

    def _decide(self, invoice_id: str, invoice: dict[str, Any]) -> PaymentEvent | None:
        status = invoice.get("status")
        # "confirmed" only appears in IPN bodies; GET says "complete". One key for both.
        if status == "confirmed":
            status = "complete"
        exception = invoice.get("exceptionStatus") or None
        order_id = invoice.get("orderId")
        if not is_order_id(order_id):
            return Ignored(
                provider=self.name,
                reason="invoice is not for one of our orders",
                provider_ref=invoice_id,
            )
        common: dict[str, Any] = {
            "provider": self.name,
            "provider_ref": invoice_id,
            "order_id": order_id,
            "occurred_at": datetime.now(UTC),
        }
        if status == "new":
            return None
        if status == "paid":
            return PaymentPending(**common, dedupe_key=f"{invoice_id}:paid", detail="paid")
        if status == "complete":
            if exception == "paidPartial":
                return Ignored(
                    provider=self.name,
                    reason="complete but partially paid",
                    provider_ref=invoice_id,
                )
            notes = {"paidOver": ("overpaid",), "marked": ("manually marked settled",)}
            return self._settled(
                invoice, f"{invoice_id}:complete", notes.get(str(exception), ()), common
            )
        if status == "expired" and exception == "paidLater":
            # Whatever late_payment says: the legacy API shows no per-payment confirmation,
            # and "paidLater" is set on unconfirmed money (InvoiceWatcher counts accounted
            # payments), so a human decides. BTCPay sends no IPN for it either; the
            # reconciler's fetch_status finds it.
            return PaymentNeedsReview(
                **common,
                dedupe_key=f"{invoice_id}:paidLater",
                reason=(
                    "paid after the invoice expired (legacy mode cannot see whether the "
                    "payment confirmed): check it in BTCPay, then issue or dismiss"
                ),
                amount_minor=None,
                currency=str(invoice.get("currency") or "").upper() or None,
            )
        if status == "expired":
            reason = "expired, partially paid" if exception == "paidPartial" else "expired"
            return PaymentFailed(**common, dedupe_key=f"{invoice_id}:expired", reason=reason)
        if status == "invalid":
            reason = "manually marked invalid" if exception == "marked" else "invalid"
            return PaymentFailed(**common, dedupe_key=f"{invoice_id}:invalid", reason=reason)
        return Ignored(
            provider=self.name, reason=f"unknown legacy status {status!r}", provider_ref=invoice_id
        )

    def _settled(
        self,
        invoice: dict[str, Any],
        dedupe_key: str,
        notes: tuple[str, ...],
        common: dict[str, Any],
    ) -> PaymentSettled:
        return settled_event(
            invoice.get("price"),
            invoice.get("currency"),
            dedupe_key=dedupe_key,
            notes=notes,
            # One invoice is one payment for us: reversals name the same invoice.
            common=common | {"payment_ref": common["provider_ref"]},
        )
