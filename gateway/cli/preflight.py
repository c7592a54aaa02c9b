"""What `check-config` checks, and what `serve` warns about at startup.

Each enabled provider is pinged with one harmless authenticated read, so a refused key or an
unreachable server shows up now, not at the first buyer's checkout:
Stripe `GET /v1/checkout/sessions?limit=1`, BTCPay Greenfield
`GET /api/v1/stores/{id}/invoices?take=1` (covered by the `canviewinvoices` permission the
README asks for; `GET /api/v1/stores/{id}` would need store-settings rights too).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from tortoise import connections

from config.catalog import CatalogError, load_catalog
from config.settings import Settings, env_name
from gateway.db import database as db
from gateway.licenses.signing import KeyFileError, KeyStore


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def check_installation(settings: Settings, *, seconds: float) -> list[Check]:
    """The catalog, the database, the license signing keys and every provider, in order."""
    try:
        catalog = load_catalog(settings.products_file)
        checks = [Check("catalog", True, f"{len(catalog.products)} product(s)")]
    except CatalogError as exc:
        checks = [Check("catalog", False, str(exc))]
    checks.append(await _ping_db(settings, seconds))
    checks.append(_signing_keys(settings))
    return checks + await ping_providers(settings, seconds=seconds)


def _signing_keys(settings: Settings) -> Check:
    """The license signing keys as `serve` will load them: an unsafe key file stops startup."""
    directory = settings.license.keys_path(settings.data_dir)
    try:
        keys = KeyStore(directory).load()
    except (KeyFileError, OSError) as exc:
        return Check("license keys", False, str(exc))
    if not keys:
        return Check("license keys", True, f"none yet in {directory}: the first start makes one")
    return Check("license keys", True, f"{len(keys)} in {directory}, signing: {keys[-1].kid}")


async def _ping_db(settings: Settings, seconds: float) -> Check:
    where = settings.resolved_database_url.split("@")[-1]
    try:
        await asyncio.wait_for(db.open_db(settings, run_migrations=False), seconds)
        try:
            await asyncio.wait_for(connections.get("default").execute_query("SELECT 1"), seconds)
        finally:
            await db.close_db()
    except Exception as exc:  # any failure to reach the database is the finding
        return Check("database", False, f"{where}: {type(exc).__name__}: {exc}")
    return Check("database", True, f"{where} reachable")


def production_warnings(settings: Settings, *, host: str | None = None) -> list[str]:
    """Defaults that work on a laptop and fail silently in production."""
    warnings = []
    public_host = urlsplit(settings.public_url).hostname or ""
    if is_loopback(public_host) and (host is None or not is_loopback(host)):
        where = f"serving on {host}" if host else "fine on this machine only"
        warnings.append(
            f"{env_name('public_url')} is {settings.public_url} ({where}): buyers' status "
            "links and provider redirects will point at a loopback address"
        )
    if settings.mail_backend == "smtp" and settings.smtp.sender.endswith("@localhost"):
        warnings.append(
            f"{env_name('smtp', 'from')} is {settings.smtp.sender}: most mail servers refuse "
            "or junk mail from @localhost"
        )
    if settings.mail_backend != "smtp":
        warnings.append(
            f"{env_name('mail_backend')} is {settings.mail_backend}: license emails are not "
            "delivered to buyers (set it to smtp)"
        )
    return warnings


async def ping_providers(
    settings: Settings, *, seconds: float, include_disabled: bool = True
) -> list[Check]:
    """One check per provider: disabled (with why), reachable and accepting our key, or not."""
    checks = []
    async with httpx.AsyncClient(timeout=seconds, follow_redirects=False) as client:
        for name, (active, reason) in settings.provider_status.items():
            if not active:
                if include_disabled:
                    # Half configured under "auto" is almost always a forgotten variable.
                    partial = _partially_configured(settings, name)
                    checks.append(Check(f"provider {name}", not partial, reason))
            elif name == "stripe":
                checks.append(await _ping_stripe(client, settings))
            elif settings.btcpay.mode == "legacy":
                checks.append(
                    Check("provider btcpay", True, "legacy mode: paired key and token present")
                )
            else:
                checks.append(await _ping_btcpay(client, settings))
    return checks


def _partially_configured(settings: Settings, name: str) -> bool:
    if name == "stripe":
        missing, total = settings.stripe.missing(), 2
    elif settings.btcpay.mode == "greenfield":
        missing, total = settings.btcpay.missing(settings.data_dir), 4
    else:
        return False
    return 0 < len(missing) < total


async def _ping_stripe(client: httpx.AsyncClient, settings: Settings) -> Check:
    stripe = settings.stripe
    assert stripe.secret_key is not None  # active means configured
    url = f"{stripe.api_base.rstrip('/')}/v1/checkout/sessions"
    headers = {"authorization": f"Bearer {stripe.secret_key.get_secret_value()}"}
    return _verdict(
        "provider stripe",
        await _get(client, url, headers, params={"limit": "1"}),
        where=stripe.api_base,
        key_var=env_name("stripe", "secret_key"),
    )


async def _ping_btcpay(client: httpx.AsyncClient, settings: Settings) -> Check:
    btcpay = settings.btcpay
    assert btcpay.url is not None
    assert btcpay.api_key is not None
    url = f"{btcpay.url.rstrip('/')}/api/v1/stores/{btcpay.store_id}/invoices"
    headers = {"authorization": f"token {btcpay.api_key.get_secret_value()}"}
    response = await _get(client, url, headers, params={"take": "1"})
    if isinstance(response, httpx.Response) and response.status_code in (403, 404):
        return Check(
            "provider btcpay",
            False,
            f"BTCPay at {btcpay.url} answered {response.status_code} for store "
            f"{btcpay.store_id}: check {env_name('btcpay', 'store_id')} and that the API key "
            "has btcpay.store.canviewinvoices on that store",
        )
    return _verdict(
        "provider btcpay", response, where=btcpay.url, key_var=env_name("btcpay", "api_key")
    )


async def _get(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    params: dict[str, str] | None = None,
) -> httpx.Response | str:
    try:
        return await client.get(url, headers=headers, params=params)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _verdict(name: str, response: httpx.Response | str, *, where: str, key_var: str) -> Check:
    if isinstance(response, str):
        return Check(name, False, f"cannot reach {where}: {response}")
    status = response.status_code
    if status == 200:
        return Check(name, True, f"{where} accepts the API key")
    if status == 401:
        return Check(name, False, f"{where} refused the API key (401): check {key_var}")
    return Check(name, False, f"{where} answered {status} to an authenticated read")
