"""Regenerate tests/specs/stripe/ from Stripe's OpenAPI description.

    python tools/extract_stripe_spec.py \\
        [--spec ../shared/specs/stripe/spec3.json] [--out tests/specs/stripe]

The full spec is 5 MB and lives outside the repo; CI may not have it. The fake Stripe API is
checked against this small committed extract instead: the `POST /v1/checkout/sessions`
request schema with its deepObject encoding, and the object schemas the fake returns
(`checkout.session`, `charge`, `dispute`, `payment_intent`, `event`, `error`) with every
schema they reference. Other top-level API resources (customer, invoice, ...) only appear
there as expandable alternatives to an id string; the fake always sends the id, so they are
kept as open `{"type": "object"}` stubs instead of pulling in half the spec. Descriptions
are dropped; nothing else is changed, so the validators see Stripe's own constraints.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = ROOT.parent / "shared" / "specs" / "stripe" / "spec3.json"
DEFAULT_OUT = ROOT / "tests" / "specs" / "stripe"
EXTRACT_NAME = "stripe_extract.json"
REQUEST_PATH = "/v1/checkout/sessions"
ROOT_SCHEMAS = ("checkout.session", "charge", "dispute", "payment_intent", "event", "error")
_DROPPED_KEYS = frozenset({"description", "title", "x-stripeBypassValidation"})
_COMMIT = re.compile(r"\b[0-9a-f]{40}\b")


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        # A property may itself be called "description" (product_data.description): only
        # documentation strings are dropped, never schemas.
        return {
            k: _strip(v)
            for k, v in node.items()
            if not (k in _DROPPED_KEYS and not isinstance(v, dict))
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value.rsplit("/", 1)[-1])
            else:
                found.extend(_refs(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_refs(value))
    return found


def build_extract(
    spec: dict[str, Any], source: str, fixtures: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The trimmed extract as a JSON-ready dict (deterministic for its inputs).

    `fixtures` (Stripe's fixtures3.json) is newer than the spec; the top-level keys of its
    example objects are kept so tests can insist the fake returns today's full shape, not
    just the few fields the 2023 schema marks required.
    """
    schemas: dict[str, Any] = spec["components"]["schemas"]
    form = spec["paths"][REQUEST_PATH]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"
    ]
    request = _strip({"schema": form["schema"], "encoding": form.get("encoding", {})})
    kept: dict[str, Any] = {}
    stubs: set[str] = set()
    todo = [*ROOT_SCHEMAS, *_refs(request)]
    while todo:
        name = todo.pop()
        if name in kept or name in stubs:
            continue
        schema = schemas[name]
        if name not in ROOT_SCHEMAS and "x-resourceId" in schema:
            stubs.add(name)
            continue
        kept[name] = _strip(schema)
        todo.extend(_refs(schema))
    for name in stubs:
        kept[name] = {"type": "object", "x-stub": "expanded resource, not validated here"}
    fixture_keys = {}
    if fixtures is not None:
        resources = fixtures["resources"]
        fixture_keys = {name: sorted(resources[name]) for name in ROOT_SCHEMAS if name in resources}
    return {
        "x-source": source,
        "x-fixture-keys": fixture_keys,
        "x-spec-version": spec.get("info", {}).get("version"),
        "request": {"path": REQUEST_PATH, "method": "post", **request},
        "components": {"schemas": dict(sorted(kept.items()))},
    }


def render(extract: dict[str, Any]) -> str:
    return json.dumps(extract, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def load_fixtures(spec_path: Path) -> dict[str, Any] | None:
    path = spec_path.with_name("fixtures3.json")
    if not path.exists():
        return None
    fixtures: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return fixtures


def source_line(spec_path: Path) -> str:
    """Where the spec came from, taken from the SOURCE.md next to it."""
    note = spec_path.with_name("SOURCE.md")
    commit = "unknown commit"
    if note.exists():
        match = _COMMIT.search(note.read_text(encoding="utf-8"))
        if match:
            commit = match.group(0)
    commits = _COMMIT.findall(note.read_text(encoding="utf-8")) if note.exists() else []
    fixtures = f"; fixtures3.json @ {commits[1]}" if len(commits) > 1 else ""
    return f"github.com/stripe/openapi openapi/spec3.yaml @ {commit} (trimmed){fixtures}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    fixtures = load_fixtures(args.spec)
    source = source_line(args.spec)
    args.out.mkdir(parents=True, exist_ok=True)
    extract = build_extract(spec, source, fixtures)
    (args.out / EXTRACT_NAME).write_text(render(extract), encoding="utf-8")
    (args.out / "SOURCE.md").write_text(
        "# Stripe OpenAPI extract (generated)\n\n"
        f"`{EXTRACT_NAME}` is generated by `tools/extract_stripe_spec.py` from {source}.\n"
        "Do not edit by hand; rerun the tool when the spec in ../shared/specs/stripe/ changes\n"
        "(`tests/sandbox/test_stripe_fake.py` fails while the extract is stale).\n",
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
