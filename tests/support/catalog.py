"""Product catalog files for the catalog tests: a tier table and one product written as TOML."""

from __future__ import annotations

from pathlib import Path

TIERS = "[tiers.pro]\nseats = 3\n"


def write_catalog(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "products.toml"
    path.write_text(text, encoding="utf-8")
    return path


def product_toml(**fields: str) -> str:
    """One `[[products]]` table; a field given as "<omit>" is left out."""
    values = {
        "id": '"p1"',
        "name": '"Product"',
        "price": "9.99",
        "currency": '"USD"',
        "tier": '"pro"',
    }
    values.update(fields)
    body = "".join(f"{key} = {value}\n" for key, value in values.items() if value != "<omit>")
    return f"[[products]]\n{body}"
