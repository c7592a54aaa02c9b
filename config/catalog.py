"""The product catalog, loaded once at startup from `products.toml`.

Prices are written as decimals in the file (a TOML float is read as `Decimal`, so `9.99`
stays exact) and held as integer minor units. Anything invalid fails startup with the file
and the key named, because a typo in a price is a lost sale or a free license.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from config.money import MoneyError, format_decimal, normalize_currency, to_minor

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# What storage and providers accept, checked at startup so that no settlement can fail on
# a catalog value later: the license email subject ("Your <name> license key") must fit its
# 255-character column, tier and add-on names the 64-character license columns.
NAME_MAX = 200
DESCRIPTION_MAX = 1000
TIER_MAX = 64
ADDON_MAX = 64
ADDONS_MAX_COUNT = 32
SEATS_MAX = 100_000

_TOP_KEYS = ("tiers", "products")
_TIER_KEYS = ("seats",)
_PRODUCT_KEYS = ("id", "name", "description", "price", "currency", "tier", "addons")


class CatalogError(ValueError):
    """The catalog file is missing or invalid; the message names file and key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tier:
    id: str
    seats: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    id: str
    name: str
    description: str
    amount_minor: int
    currency: str
    tier: str
    addons: tuple[str, ...]
    seats: int

    @property
    def price(self) -> str:
        """Decimal string in major units ("9.99")."""
        return format_decimal(self.amount_minor, self.currency)


@dataclass(frozen=True, slots=True)
class Catalog:
    products: Mapping[str, Product]
    tiers: Mapping[str, Tier]

    def get(self, product_id: str) -> Product | None:
        return self.products.get(product_id)

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products.values())

    def __len__(self) -> int:
        return len(self.products)


def _fail(path: Path, key: str, message: str) -> CatalogError:
    return CatalogError(f"{path}: {key}: {message}")


def _check_keys(path: Path, where: str, found: Iterable[str], known: tuple[str, ...]) -> None:
    """A typo (`adons = [...]`) is a startup error, not a license without its add-on."""
    for key in found:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
        name = f"{where}.{key}" if where else key
        raise _fail(path, name, f"unknown key{hint}")


def _check_text(path: Path, key: str, value: str, limit: int, *, multiline: bool = False) -> None:
    if len(value) > limit:
        raise _fail(path, key, f"at most {limit} characters, got {len(value)}")
    # A line break in a name would end up in an email Subject header (refused at send time).
    allowed = "\t\n" if multiline else ""
    if any((ord(ch) < 32 and ch not in allowed) or ch == "\x7f" for ch in value):
        raise _fail(path, key, "must not contain control characters or line breaks")


def _parse_price(path: Path, key: str, raw: Any, currency: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (Decimal, str, int)):
        raise _fail(path, key, f"price must be a decimal number, got {raw!r}")
    try:
        minor = to_minor(raw if isinstance(raw, Decimal) else Decimal(str(raw)), currency)
    except (MoneyError, ArithmeticError) as exc:
        raise _fail(path, key, str(exc)) from exc
    if minor <= 0:
        raise _fail(path, key, f"price must be positive, got {raw}")
    return minor


def parse_catalog(data: Mapping[str, Any], path: Path) -> Catalog:
    """Validate an already-parsed catalog document (floats must be `Decimal`)."""
    _check_keys(path, "", data.keys(), _TOP_KEYS)
    tiers = _parse_tiers(path, data.get("tiers", {}))
    raw_products = data.get("products")
    if not isinstance(raw_products, list) or not raw_products:
        raise _fail(path, "products", "at least one [[products]] entry is required")
    products: dict[str, Product] = {}
    for index, item in enumerate(raw_products):
        product = _parse_product(path, f"products[{index}]", item, tiers, products)
        products[product.id] = product
    return Catalog(products=products, tiers=tiers)


def _parse_tiers(path: Path, raw_tiers: Any) -> dict[str, Tier]:
    if not isinstance(raw_tiers, dict):
        raise _fail(path, "tiers", "must be a table")
    return {tier_id: _parse_tier(path, tier_id, tier) for tier_id, tier in raw_tiers.items()}


def _parse_tier(path: Path, tier_id: str, tier: Any) -> Tier:
    key = f"tiers.{tier_id}"
    if not isinstance(tier, dict):
        raise _fail(path, key, "must be a table")
    _check_keys(path, key, tier.keys(), _TIER_KEYS)
    if not tier_id.strip():
        raise _fail(path, key, "tier name must not be empty")
    _check_text(path, key, tier_id, TIER_MAX)
    seats = tier.get("seats")
    if isinstance(seats, bool) or not isinstance(seats, int) or not 1 <= seats <= SEATS_MAX:
        raise _fail(
            path, f"{key}.seats", f"must be a positive integer up to {SEATS_MAX}, got {seats!r}"
        )
    return Tier(id=tier_id, seats=seats)


def _parse_product(
    path: Path, key: str, item: Any, tiers: Mapping[str, Tier], seen: Mapping[str, Product]
) -> Product:
    """One `[[products]]` entry; `key` is its position until its id is known."""
    if not isinstance(item, dict):
        raise _fail(path, key, "must be a table")
    pid = item.get("id")
    if not isinstance(pid, str) or not _ID_RE.match(pid):
        raise _fail(path, f"{key}.id", f"must match {_ID_RE.pattern}, got {pid!r}")
    key = f"products.{pid}"
    if pid in seen:
        raise _fail(path, f"{key}.id", "duplicate product id")
    _check_keys(path, key, item.keys(), _PRODUCT_KEYS)
    name = _product_name(path, key, item.get("name"))
    currency = _product_currency(path, key, item.get("currency", ""))
    amount_minor = _parse_price(path, f"{key}.price", item.get("price"), currency)
    tier_id = item.get("tier")
    if not isinstance(tier_id, str) or tier_id not in tiers:
        raise _fail(path, f"{key}.tier", f"unknown tier {tier_id!r} (known: {sorted(tiers)})")
    addons = _product_addons(path, key, item.get("addons", []))
    description = _product_description(path, key, item.get("description", name))
    return Product(
        id=pid,
        name=name,
        description=description,
        amount_minor=amount_minor,
        currency=currency,
        tier=tier_id,
        addons=tuple(addons),
        seats=tiers[tier_id].seats,
    )


def _product_name(path: Path, key: str, name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise _fail(path, f"{key}.name", "must be a non-empty string")
    _check_text(path, f"{key}.name", name, NAME_MAX)
    return name


def _product_currency(path: Path, key: str, raw: Any) -> str:
    try:
        return normalize_currency(str(raw))
    except MoneyError as exc:
        raise _fail(path, f"{key}.currency", str(exc)) from exc


def _product_addons(path: Path, key: str, addons: Any) -> list[str]:
    if not isinstance(addons, list) or not all(isinstance(a, str) and a for a in addons):
        raise _fail(path, f"{key}.addons", "must be a list of strings, none empty")
    if len(addons) > ADDONS_MAX_COUNT:
        raise _fail(path, f"{key}.addons", f"at most {ADDONS_MAX_COUNT} add-ons")
    for addon in addons:
        _check_text(path, f"{key}.addons", addon, ADDON_MAX)
    return addons


def _product_description(path: Path, key: str, description: Any) -> str:
    if not isinstance(description, str):
        raise _fail(path, f"{key}.description", "must be a string")
    _check_text(path, f"{key}.description", description, DESCRIPTION_MAX, multiline=True)
    return description


def load_catalog(path: Path) -> Catalog:
    """Read and validate the catalog file; raises `CatalogError` naming file and key."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh, parse_float=Decimal)
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: catalog file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: invalid TOML: {exc}") from exc
    return parse_catalog(data, path)
