"""Catalog: the sample file, per-currency prices, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.catalog import CatalogError, load_catalog
from config.settings import DEFAULT_PRODUCTS_FILE
from tests.support.catalog import TIERS, product_toml, write_catalog


def test_sample_catalog_has_pro_and_enterprise_in_minor_units() -> None:
    catalog = load_catalog(DEFAULT_PRODUCTS_FILE)

    pro = catalog.get("pro")
    enterprise = catalog.get("enterprise")
    assert pro is not None
    assert enterprise is not None
    assert (pro.amount_minor, pro.currency, pro.price) == (999, "USD", "9.99")
    assert (pro.tier, pro.addons, pro.seats) == ("pro", ("advanced-models",), 3)
    assert (enterprise.amount_minor, enterprise.price, enterprise.tier) == (
        3999,
        "39.99",
        "enterprise",
    )
    assert enterprise.addons == ("tri-agent-system", "advanced-models", "enterprise-features")
    assert enterprise.seats == 25
    assert len(catalog) == 2
    assert [p.id for p in catalog] == ["pro", "enterprise"]
    assert catalog.get("nope") is None


def test_zero_decimal_currency_price_is_taken_as_is(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TIERS + product_toml(price="1500", currency='"JPY"'))

    product = load_catalog(path).get("p1")

    assert product is not None
    assert (product.amount_minor, product.currency, product.price) == (1500, "JPY", "1500")


def test_zero_decimal_currency_refuses_a_fraction(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TIERS + product_toml(price="1500.5", currency='"JPY"'))

    with pytest.raises(CatalogError, match=r"products\.p1\.price: 1500\.5 has more decimals"):
        load_catalog(path)


def test_three_decimal_currency_price_uses_thousandths(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TIERS + product_toml(price="1.234", currency='"kwd"'))

    product = load_catalog(path).get("p1")

    assert product is not None
    assert (product.amount_minor, product.currency, product.price) == (1234, "KWD", "1.234")


def test_three_decimal_currency_refuses_a_fourth_decimal(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TIERS + product_toml(price="1.2345", currency='"KWD"'))

    with pytest.raises(CatalogError, match=r"products\.p1\.price"):
        load_catalog(path)


def test_price_as_string_is_read_exactly(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TIERS + product_toml(price='"19.90"'))

    product = load_catalog(path).get("p1")

    assert product is not None
    assert product.amount_minor == 1990


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (TIERS + product_toml(currency='"XXX"'), "products.p1.currency", "unknown currency"),
        (TIERS + product_toml(price="-1.00"), "products.p1.price", "must be positive"),
        (TIERS + product_toml(price="0"), "products.p1.price", "must be positive"),
        # A float-typed price would silently become 9.998999...; the extra digit is refused.
        (TIERS + product_toml(price="9.999"), "products.p1.price", "more decimals than USD"),
        (TIERS + product_toml(price="true"), "products.p1.price", "must be a decimal number"),
        (TIERS + product_toml(price="nan"), "products.p1.price", "not a finite amount"),
        (TIERS + product_toml() + product_toml(), "products.p1.id", "duplicate product id"),
        (TIERS + product_toml(tier='"gold"'), "products.p1.tier", "unknown tier 'gold'"),
        (TIERS + product_toml(id="<omit>"), "products[0].id", "must match"),
        (TIERS + product_toml(id='"Bad Id"'), "products[0].id", "must match"),
        (TIERS + product_toml(name="<omit>"), "products.p1.name", "non-empty string"),
        (TIERS + product_toml(price="<omit>"), "products.p1.price", "got None"),
        (TIERS + product_toml(currency="<omit>"), "products.p1.currency", "unknown currency"),
        (TIERS + product_toml(tier="<omit>"), "products.p1.tier", "unknown tier None"),
        (TIERS + product_toml(addons="[1, 2]"), "products.p1.addons", "list of strings"),
        (TIERS + product_toml(description="5"), "products.p1.description", "must be a string"),
        (TIERS, "products", "at least one [[products]]"),
        ('products = ["pro"]\n' + TIERS, "products[0]", "must be a table"),
        ("tiers = 3\n" + product_toml(), "tiers", "must be a table"),
        ("[tiers]\npro = 3\n" + product_toml(), "tiers.pro", "must be a table"),
        ("[tiers.pro]\nseats = 0\n" + product_toml(), "tiers.pro.seats", "positive integer"),
    ],
)
def test_invalid_catalog_fails_naming_file_and_key(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write_catalog(tmp_path, text)

    with pytest.raises(CatalogError) as err:
        load_catalog(path)

    assert str(err.value).startswith(f"{path}: {key}: ")
    assert reason in str(err.value)


def test_missing_catalog_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"

    with pytest.raises(CatalogError, match="catalog file not found") as err:
        load_catalog(path)

    assert str(path) in str(err.value)


def test_invalid_toml_catalog_is_named(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, "[[products]\nid = \n")

    with pytest.raises(CatalogError, match="invalid TOML") as err:
        load_catalog(path)

    assert str(err.value).startswith(f"{path}: ")
