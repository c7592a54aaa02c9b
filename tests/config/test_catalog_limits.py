"""Catalog values are checked against what storage accepts, and typos are startup errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.catalog import NAME_MAX, TIER_MAX, CatalogError, load_catalog
from tests.support.catalog import TIERS, product_toml, write_catalog


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        # The subject "Your <name> license key" has a 255-character column.
        (TIERS + product_toml(name=f'"{"n" * (NAME_MAX + 1)}"'), "products.p1.name", "at most"),
        (TIERS + product_toml(name='"two\\nlines"'), "products.p1.name", "line breaks"),
        (
            f"[tiers.{'t' * (TIER_MAX + 1)}]\nseats = 1\n" + product_toml(tier=f'"{"t" * 65}"'),
            f"tiers.{'t' * (TIER_MAX + 1)}",
            "at most 64",
        ),
        (TIERS + product_toml(addons=f'["{"a" * 65}"]'), "products.p1.addons", "at most 64"),
        (TIERS + product_toml(addons='[""]'), "products.p1.addons", "none empty"),
        (TIERS + product_toml(description=f'"{"d" * 1001}"'), "products.p1.description", "at most"),
        ("[tiers.pro]\nseats = 10000000000\n" + product_toml(), "tiers.pro.seats", "up to"),
        # Unknown keys: named, with a suggestion when one is close.
        (TIERS + product_toml(adons='["x"]'), "products.p1.adons", "did you mean 'addons'?"),
        (TIERS + product_toml(prize="1.00"), "products.p1.prize", "did you mean 'price'?"),
        ("[tiers.pro]\nseat = 3\n" + product_toml(), "tiers.pro.seat", "did you mean 'seats'?"),
        ("[tier.pro]\nseats = 3\n" + product_toml(), "tier", "did you mean 'tiers'?"),
        (TIERS + product_toml(colour='"red"'), "products.p1.colour", "unknown key (known: id,"),
    ],
)
def test_catalog_value_storage_would_refuse_is_a_startup_error(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write_catalog(tmp_path, text)

    with pytest.raises(CatalogError) as err:
        load_catalog(path)

    assert str(err.value).startswith(f"{path}: {key}: "), str(err.value)
    assert reason in str(err.value)


def test_longest_accepted_name_and_tier_load(tmp_path: Path) -> None:
    tier = "t" * TIER_MAX
    text = f"[tiers.{tier}]\nseats = 1\n" + product_toml(
        name=f'"{"n" * NAME_MAX}"', tier=f'"{tier}"', addons=f'["{"a" * 64}"]'
    )

    catalog = load_catalog(write_catalog(tmp_path, text))

    product = catalog.get("p1")
    assert product is not None
    assert (len(product.name), product.tier) == (NAME_MAX, tier)
