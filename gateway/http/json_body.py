"""JSON from clients (checkout, license API) decoded to text we can store.

`json.loads` accepts escapes such as `"\\ud800"` and yields a lone surrogate: valid JSON
syntax, but a str no database driver, log handler or UTF-8 encoder accepts (SQLite raises
`UnicodeEncodeError`, asyncpg an error the gateway would take for a lost connection). Such a
document is refused here, once, like any other undecodable body.
"""

from __future__ import annotations

import json
from typing import Any


def loads(raw: bytes | str) -> Any:
    """`json.loads`, raising ValueError also for strings that are not valid Unicode text
    (lone surrogates). Nesting past the recursion limit raises RecursionError, as there."""
    data = json.loads(raw)
    try:
        # Round-trip as UTF-8: the cheapest complete check of every key and string in it
        # (bodies are size-capped before they get here).
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("JSON string is not valid Unicode text (lone surrogate)") from exc
    return data
