"""What the license API accepts: a JSON object body, short text fields without control
characters, and a key in any spelling a human types (case, spaces, missing dashes)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gateway.http import json_body as json_text
from gateway.http.errors import InvalidRequest
from gateway.licenses.keys import ALPHABET, KEY_LENGTH, normalize_key

MAX_FINGERPRINT = 128  # Activation.fingerprint / .label column sizes
MAX_LABEL = 128
MAX_KEY_INPUT = 128  # generous for pasted keys with spaces; longer is not a key


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json_text.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the limit
        raise InvalidRequest("body: must be a JSON object", field="body") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body: must be a JSON object", field="body")
    return data


def text_field(data: dict[str, Any], name: str, *, limit: int, required: bool) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name}: is required", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name}: must be a string", field=name)
    value = value.strip()
    if required and not value:
        raise InvalidRequest(f"{name}: must not be empty", field=name)
    if len(value) > limit:
        raise InvalidRequest(f"{name}: at most {limit} characters", field=name)
    # PostgreSQL refuses NUL in text, and control characters have no place in these fields.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidRequest(f"{name}: must not contain control characters", field=name)
    return value


def optional_fingerprint(data: dict[str, Any]) -> str | None:
    return text_field(data, "fingerprint", limit=MAX_FINGERPRINT, required=False) or None


def required_fingerprint(data: dict[str, Any]) -> str:
    found = text_field(data, "fingerprint", limit=MAX_FINGERPRINT, required=True)
    assert found is not None
    return found


def label(data: dict[str, Any]) -> str:
    return text_field(data, "label", limit=MAX_LABEL, required=False) or ""


def license_key(data: dict[str, Any]) -> str | None:
    """The canonical key, or None when it cannot be any key (answered like an unknown one)."""
    raw = text_field(data, "key", limit=MAX_KEY_INPUT, required=True)
    assert raw is not None
    key = normalize_key(raw)
    if len(key) != KEY_LENGTH or any(ch not in ALPHABET for ch in key.replace("-", "")):
        return None
    return key
