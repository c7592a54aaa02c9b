"""License keys: `XXXX-XXXX-XXXX-XXXX` from an alphabet without look-alikes, how a typed key
is read back, and how one is masked in logs."""

from __future__ import annotations

import secrets
from collections.abc import Callable

# No 0/O, 1/I/L: a buyer reads the key off an email and types it.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GROUPS = 4
GROUP_LEN = 4
KEY_LENGTH = GROUPS * GROUP_LEN + GROUPS - 1

# The applier takes one of these so a test can force a key clash.
KeyFactory = Callable[[], str]


def generate_key() -> str:
    """A fresh random key (~79 bits); uniqueness is enforced by the database."""
    return "-".join(
        "".join(secrets.choice(ALPHABET) for _ in range(GROUP_LEN)) for _ in range(GROUPS)
    )


def normalize_key(raw: str) -> str:
    """Canonical form of a key a human typed (case, spaces, missing dashes)."""
    compact = "".join(ch for ch in raw.upper() if ch.isalnum())
    return "-".join(compact[i : i + GROUP_LEN] for i in range(0, len(compact), GROUP_LEN))


def mask_key(key: str) -> str:
    """For logs: never write a whole key."""
    return key[:4] + "-****-****-" + key[-4:] if len(key) >= 8 else "****"
