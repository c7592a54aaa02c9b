"""Money: exact minor units per currency exponent, no silent rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from config.money import (
    MoneyError,
    exponent,
    format_decimal,
    from_minor,
    normalize_currency,
    to_minor,
)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (Decimal("9.99"), "USD", 999),
        (Decimal("39.99"), "usd", 3999),
        ("10", "EUR", 1000),
        (1500, "JPY", 1500),
        (Decimal("1500"), "JPY", 1500),
        (Decimal("1.234"), "KWD", 1234),
        (Decimal("0.5"), "BHD", 500),
        (Decimal("9.990"), "USD", 999),  # trailing zeros are not extra precision
    ],
)
def test_to_minor_is_exact_for_each_exponent(
    amount: Decimal | str | int, currency: str, minor: int
) -> None:
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (Decimal("1500.5"), "JPY"),
        (Decimal("1.2345"), "KWD"),
        (Decimal("9.999"), "USD"),
        (Decimal("0.001"), "EUR"),
    ],
)
def test_to_minor_refuses_more_decimals_than_the_currency_has(
    amount: Decimal, currency: str
) -> None:
    with pytest.raises(MoneyError, match="more decimals than"):
        to_minor(amount, currency)


def test_to_minor_refuses_a_binary_float_expansion() -> None:
    # Decimal(0.1) is 0.1000000000000000055...: exactly what float-typed prices would carry.
    with pytest.raises(MoneyError, match="more decimals"):
        to_minor(Decimal(0.1), "USD")  # noqa: RUF032 - the float is the point


@pytest.mark.parametrize("amount", ["abc", "NaN", "Infinity"])
def test_to_minor_refuses_non_finite_or_non_numeric(amount: str) -> None:
    with pytest.raises(MoneyError):
        to_minor(amount, "USD")


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(999, "USD", "9.99"), (1000, "EUR", "10.00"), (1500, "JPY", "1500"), (1234, "KWD", "1.234")],
)
def test_from_minor_and_format_decimal_round_trip(minor: int, currency: str, text: str) -> None:
    assert format_decimal(minor, currency) == text
    assert from_minor(minor, currency) == Decimal(text)
    assert to_minor(from_minor(minor, currency), currency) == minor


def test_exponent_and_currency_normalisation() -> None:
    assert (exponent("JPY"), exponent("usd"), exponent("KWD")) == (0, 2, 3)
    assert normalize_currency(" eur ") == "EUR"
    with pytest.raises(MoneyError, match="unknown currency 'XXX'"):
        normalize_currency("XXX")
