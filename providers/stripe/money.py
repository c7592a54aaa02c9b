"""Stripe's amount units, and the exact conversion from and to our ISO 4217 minor units.

Source: Stripe's "Supported currencies" page, docs.stripe.com/currencies ("Minor units in
API amounts", "Zero-decimal currencies", "Three-decimal currencies", "Special cases"), and
the support article "Deprecation of fractional ISK charges and refunds"
(support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds):

- zero-decimal in Stripe's API: BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF
  XPF (MGA differs from ISO 4217, which gives it 2 decimals);
- three-decimal: BHD JOD KWD OMR TND, and the last digit must be 0;
- ISK: a zero-decimal currency (ISO 0) that Stripe's API keeps two-decimal "for backwards
  compatibility": 5 ISK is `500`, and since 2023-07-14 amounts must be multiples of 100;
- HUF and TWD: two-decimal in the API like ISO; Stripe treats them as zero-decimal only for
  payouts (which this gateway never creates), so charges convert 1:1;
- UGX: zero-decimal like ISO; its special case also concerns payouts only.
Every other currency we know is two-decimal in Stripe's API. ISO three-decimal currencies
Stripe does not list (IQD, LYD) cannot be charged through Stripe.
"""

from __future__ import annotations

from config.money import MoneyError, exponent, normalize_currency

ZERO_DECIMAL = frozenset(
    {
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG",
        "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    }
)  # fmt: skip
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# API amount must be a multiple of this (Stripe refuses anything else).
_MULTIPLE_OF = {"ISK": 100, **dict.fromkeys(THREE_DECIMAL, 10)}


def stripe_exponent(currency: str) -> int:
    """Decimal places of an amount in Stripe's API for `currency`."""
    code = normalize_currency(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    if exponent(code) == 3:
        raise MoneyError(f"Stripe does not charge {code} (a three-decimal currency it lacks)")
    return 2


def to_stripe(minor: int, currency: str) -> int:
    """Our ISO minor units -> Stripe's API amount; `MoneyError` if Stripe cannot take it."""
    code = normalize_currency(currency)
    shift = stripe_exponent(code) - exponent(code)
    factor = int("1" + "0" * abs(shift))
    if shift >= 0:
        amount = minor * factor
    elif minor % factor:
        raise MoneyError(
            f"{code} {minor} ISO minor units has a fraction Stripe cannot charge "
            f"(Stripe counts {code} in whole units)"
        )
    else:
        amount = minor // factor
    multiple = _MULTIPLE_OF.get(code, 1)
    if amount % multiple:
        raise MoneyError(
            f"Stripe requires {code} amounts in multiples of {multiple} API units "
            f"(got {amount}); round the price"
        )
    return amount


def from_stripe(amount: int, currency: str) -> int:
    """Stripe's API amount -> our ISO minor units; `MoneyError` if not exact."""
    code = normalize_currency(currency)
    shift = stripe_exponent(code) - exponent(code)
    factor = int("1" + "0" * abs(shift))
    if shift <= 0:
        return amount * factor
    if amount % factor:
        raise MoneyError(f"Stripe amount {amount} {code} is not a whole ISO minor unit")
    return amount // factor
