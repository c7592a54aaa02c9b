"""The nested sections of the settings (`[stripe]`, `[btcpay]`, `[smtp]`, `[license]`, `[shop]`,
`[limits]`, `[reconcile]`, `[mail]`): one pydantic model each, set from the environment as
`GATEWAY_<SECTION>__<FIELD>` or from the operator TOML file (secrets excepted).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator

from config.env import env_name

Toggle = bool | Literal["auto"]


def reject_empty_secret(value: SecretStr | None) -> SecretStr | None:
    """A validator for secret fields: set means non-blank (unset is how to leave one out)."""
    if value is not None and not value.get_secret_value().strip():
        raise ValueError("must not be empty (unset it instead)")
    return value


class ProviderSettings(BaseModel):
    """What every provider has: the switch and what the buyer sees."""

    model_config = ConfigDict(extra="forbid")

    # true: must work, a missing secret stops startup. "auto": on when its secrets are
    # present, otherwise off with one log line. false: off.
    enabled: Toggle = "auto"
    label: str
    fee_hint: str
    speed_hint: str
    order: int = 0


class StripeSettings(ProviderSettings):
    label: str = "Pay with Card"
    fee_hint: str = "2.9% + 30¢"
    speed_hint: str = "instant"
    order: int = 2
    secret_key: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    api_base: str = "https://api.stripe.com"
    # Stripe allows 30 min .. 24 h; None keeps Stripe's default (24 h).
    session_expires_minutes: int | None = Field(default=None, ge=30, le=24 * 60)
    max_network_retries: int = Field(default=2, ge=0, le=5)
    timeout_seconds: float = Field(default=20.0, gt=0)

    _check_secrets = field_validator("secret_key", "webhook_secret")(reject_empty_secret)

    def missing(self) -> list[str]:
        return [
            env_name("stripe", name)
            for name in ("secret_key", "webhook_secret")
            if getattr(self, name) is None
        ]


class BtcpaySettings(ProviderSettings):
    label: str = "Pay with Bitcoin"
    fee_hint: str = "No processor fees"
    speed_hint: str = "10-60 min on-chain, instant on Lightning"
    order: int = 1
    mode: Literal["greenfield", "legacy"] = "greenfield"
    url: str | None = None
    store_id: str | None = None
    api_key: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    speed_policy: Literal["HighSpeed", "MediumSpeed", "LowMediumSpeed", "LowSpeed"] = "MediumSpeed"
    expiration_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    # A full payment that arrives after the invoice expired: BTCPay never settles it by
    # itself, so the seller picks: issue the license, or park the order for review.
    late_payment: Literal["settle", "review"] = "settle"
    # Legacy (btcpay-python pairing) mode keeps its private key and merchant token here.
    legacy_key_file: Path | None = None
    legacy_token_file: Path | None = None
    timeout_seconds: float = Field(default=20.0, gt=0)

    _check_secrets = field_validator("api_key", "webhook_secret")(reject_empty_secret)

    def missing(self, data_dir: Path) -> list[str]:
        if self.mode == "legacy":
            missing = [] if self.url else [env_name("btcpay", "url")]
            key, token = self.legacy_paths(data_dir)
            if not key.exists() or not token.exists():
                missing.append(
                    f"{env_name('btcpay', 'legacy_key_file')}/"
                    f"{env_name('btcpay', 'legacy_token_file')} "
                    f"(files {key} and {token}: run `checkout-gateway btcpay pair`)"
                )
            return missing
        return [
            env_name("btcpay", name)
            for name in ("url", "store_id", "api_key", "webhook_secret")
            if getattr(self, name) is None
        ]

    def legacy_paths(self, data_dir: Path) -> tuple[Path, Path]:
        return (
            self.legacy_key_file or data_dir / "btcpay_legacy_key.pem",
            self.legacy_token_file or data_dir / "btcpay_legacy_token.json",
        )


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(
        default="licenses@localhost", validation_alias=AliasChoices("from", "sender")
    )
    # starttls: upgrade on 587; tls: implicit TLS on 465; none: plain (local relay only).
    security: Literal["starttls", "tls", "none"] = "starttls"
    timeout_seconds: float = Field(default=30.0, gt=0)


class LicenseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Directory of the Ed25519 keys that sign offline license tokens (one 0600 PEM file per
    # key id); default <data_dir>/license-keys. The first key is generated on first start.
    keys_dir: Path | None = None
    # Lifetime of a signed license token: how long the buyer's app may run offline.
    token_ttl_days: int = Field(default=30, ge=1, le=3650)
    activation_help_url: str | None = None

    def keys_path(self, data_dir: Path) -> Path:
        return self.keys_dir or data_dir / "license-keys"


class ShopSettings(BaseModel):
    """The seller as the buyer sees them on the gateway's pages and emails."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="Our shop", min_length=1, max_length=120)
    # Link back to the seller's site from every buyer page; None hides the link.
    url: str | None = None
    contact_email: str | None = None
    # Shown under the license key on the thank-you page (plain text, blank lines = paragraphs).
    activation_instructions: str = (
        "Open the app, choose Activate license and paste the key. "
        "The key works on as many machines at once as your plan's seats."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


def _check_rate(value: str) -> str:
    from limits import parse

    try:
        parse(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a rate like '20/minute' or '5 per hour'") from exc
    return value


def trusted_networks(value: object) -> list[str]:
    """Proxy addresses/networks, from a list (TOML, JSON) or a comma-separated string (env,
    `serve --forwarded-allow-ips`), each checked and written canonically (`127.0.0.0/8`)."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split(",")
    if not isinstance(value, list):
        raise ValueError("must be a list of addresses or networks")
    networks = []
    for item in value:
        entry = str(item).strip()
        if not entry:
            continue
        try:
            network = None if entry == "*" else ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an IP address or network") from exc
        if network is None or network.prefixlen == 0:
            # Every hop trusted means the left-most one, which the client writes itself.
            raise ValueError(
                f"{entry!r} would let any client choose its own address: list your proxies' "
                "addresses or networks"
            )
        networks.append(str(network))
    return networks


class LimitsSettings(BaseModel):
    """Request body caps and rate limits (one mechanism, configured per route family)."""

    model_config = ConfigDict(extra="forbid")

    # Webhook bodies from BTCPay/Stripe are a few KiB; anything near the cap is abuse.
    webhook_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Checkout, license API and forms carry a handful of short fields.
    api_body_bytes: int = Field(default=16 * 1024, ge=1024)
    # Rates in the `limits` notation: "20/minute", "5 per hour", "100/day".
    checkout_per_ip: str = "20/minute"
    checkout_per_email: str = "5/minute"
    license_per_ip: str = "60/minute"
    license_per_key: str = "60/minute"
    recover_per_ip: str = "10/hour"
    recover_per_email: str = "3/hour"
    # An IPv6 client is keyed by its network of this size: one subscriber gets a whole /64
    # (or more) and picks any address in it.
    ipv6_prefix: int = Field(default=64, ge=1, le=128)

    _check_rates = field_validator(
        "checkout_per_ip",
        "checkout_per_email",
        "license_per_ip",
        "license_per_key",
        "recover_per_ip",
        "recover_per_email",
    )(_check_rate)


class ReconcileSettings(BaseModel):
    """The reconciler: asks providers about orders their webhooks left unfinished.

    The age after which a created/pending order is asked about is the top-level
    `reconcile_after_minutes` (GATEWAY_RECONCILE_AFTER_MINUTES).
    """

    model_config = ConfigDict(extra="forbid")

    # On by default: a lost webhook must not mean a lost sale.
    enabled: bool = True
    # Pause between passes.
    interval_seconds: float = Field(default=60.0, gt=0)
    # Orders are followed this long after creation: created/pending ones still open then
    # end failed (with the reason in their notes); failed/expired ones are re-checked until
    # then, for late crypto payments.
    horizon_hours: float = Field(default=72.0, gt=0)
    # First re-check of an order whose webhook showed payment activity the provider could
    # not back yet (a late instant payment racing BTCPay's PaidLate).
    recheck_soon_seconds: float = Field(default=30.0, gt=0)
    # Longest pause between polls of one order (unchanged answers and provider outages
    # back off up to this).
    max_backoff_seconds: float = Field(default=3600.0, gt=0)
    # How long a process owns an order it is polling before another may take it over.
    lease_seconds: float = Field(default=120.0, gt=0)
    batch_size: int = Field(default=50, ge=1)


class MailSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    poll_seconds: float = Field(default=5.0, gt=0)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    max_attempts: int = Field(default=20, ge=1)
    batch_size: int = Field(default=20, ge=1)
    # `serve` runs the outbox sender in-process; off (`serve --no-mailer`) when a separate
    # `send-mail` process delivers instead.
    sender_in_serve: bool = True
