"""Environment names of settings (`GATEWAY_<FIELD>`, `GATEWAY_<SECTION>__<FIELD>`) and the
error that names them.

Free of pydantic, so the CLI can catch `SettingsError` before any command loads settings.
"""

from __future__ import annotations

ENV_PREFIX = "GATEWAY_"


class SettingsError(ValueError):
    """Settings cannot be used; the message names the env variable, file or key."""


def env_name(*loc: str | int) -> str:
    """The environment variable that sets the field at `loc` (e.g. GATEWAY_STRIPE__API_KEY)."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)
