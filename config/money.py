"""Money as integer minor units of ISO 4217.

Prices enter as `Decimal` (catalog, provider payloads) and live everywhere else as an
integer count of the currency's ISO 4217 minor unit, so no float ever touches an amount.
Orders keep these ISO units. A provider whose API counts differently converts at its own
boundary (Stripe keeps ISK two-decimal and MGA zero-decimal: providers/stripe/money.py);
BTCPay takes decimal strings, which the ISO exponent renders exactly (`format_decimal`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that differ from 2 (ISO 4217 list one, "minor unit" column).
# Not a provider's list: MGA is 2 here although Stripe counts it zero-decimal, ISK is 0
# although Stripe's API keeps it two-decimal.
_ZERO_DECIMAL = frozenset(
    {
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
        "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    }
)  # fmt: skip
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

# Currencies we accept in the catalog: ISO 4217 codes that card processors and BTCPay
# price in. Unknown codes are rejected rather than guessed at.
_TWO_DECIMAL = frozenset(
    {
        "AED", "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD",
        "HUF", "IDR", "ILS", "INR", "MGA", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RON",
        "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "USD", "ZAR",
    }
)  # fmt: skip

KNOWN_CURRENCIES = _ZERO_DECIMAL | _THREE_DECIMAL | _TWO_DECIMAL


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def normalize_currency(code: str) -> str:
    """Upper-case ISO code; raises `MoneyError` for codes we do not know."""
    upper = code.strip().upper()
    if upper not in KNOWN_CURRENCIES:
        raise MoneyError(f"unknown currency {code!r}")
    return upper


def exponent(currency: str) -> int:
    """Number of decimal places of the currency's ISO 4217 minor unit."""
    code = normalize_currency(currency)
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def to_minor(amount: Decimal | str | int, currency: str) -> int:
    """Convert a major-unit amount to minor units, refusing any precision loss."""
    try:
        value = Decimal(amount) if not isinstance(amount, Decimal) else amount
    except InvalidOperation as exc:
        raise MoneyError(f"not a decimal amount: {amount!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"not a finite amount: {amount!r}")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"{amount} has more decimals than {normalize_currency(currency)} allows "
            f"({exponent(currency)})"
        )
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    """Exact major-unit `Decimal` for a minor-unit amount (e.g. 999 USD -> 9.99)."""
    exp = exponent(currency)
    return Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))


def format_decimal(minor: int, currency: str) -> str:
    """Decimal string with exactly the currency's number of places ("9.99", "1500")."""
    return str(from_minor(minor, currency))
