"""Typed operator settings.

Sources, lowest to highest precedence: defaults < the operator TOML file < `.env` < the
process environment < keyword arguments. Non-secret settings may live in the TOML file;
secrets (`SecretStr` fields) are refused there and read only from the environment or
`.env`, so a config file can be committed or shared without leaking keys.

Env names are `GATEWAY_<FIELD>` and `GATEWAY_<SECTION>__<FIELD>`. Build `Settings` once
(`load_settings()`) and pass it in; nothing in the project reads a global settings object.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG_FILE = CONFIG_DIR / "gateway.toml"
DEFAULT_PRODUCTS_FILE = CONFIG_DIR / "products.toml"
ENV_PREFIX = "GATEWAY_"

Toggle = bool | Literal["auto"]


class SettingsError(ValueError):
    """Settings cannot be used; the message names the env variable, file or key."""


def env_name(*loc: str | int) -> str:
    """The environment variable that sets the field at `loc` (e.g. GATEWAY_STRIPE__API_KEY)."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def _reject_empty_secret(value: SecretStr | None) -> SecretStr | None:
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

    _check_secrets = field_validator("secret_key", "webhook_secret")(_reject_empty_secret)

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

    _check_secrets = field_validator("api_key", "webhook_secret")(_reject_empty_secret)

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


_SECRET_PATHS = (
    ("stripe", "secret_key"),
    ("stripe", "webhook_secret"),
    ("btcpay", "api_key"),
    ("btcpay", "webhook_secret"),
    ("smtp", "password"),
)
_TOP_LEVEL_SECRETS = ("metrics_token",)


def _field_names(model: type[BaseModel]) -> list[str]:
    names: list[str] = []
    for name, info in model.model_fields.items():
        names.append(name)
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names += [c for c in alias.choices if isinstance(c, str)]
    return names


def _check_unknown_keys(
    path: Path, data: dict[str, Any], model: type[BaseModel], where: str
) -> None:
    """A typo in the operator file is a startup error naming file and key, with a hint."""
    known = _field_names(model)
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            variable = env_name(*name.split("."))
            raise SettingsError(f"{path}: {name}: unknown key ({variable} is not a setting){hint}")
        annotation = model.model_fields[key].annotation if key in model.model_fields else None
        if (
            isinstance(value, dict)
            and isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
        ):
            _check_unknown_keys(path, value, annotation, name)


class _OperatorTomlSource(PydanticBaseSettingsSource):
    """Reads the operator TOML named by `config_file` (kwarg or env), refusing secrets."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ is overridden; pydantic-settings requires this

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            with self.path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise SettingsError(
                f"{self.path}: config file not found (set {env_name('config_file')})"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{self.path}: invalid TOML: {exc}") from exc
        for section, key in _SECRET_PATHS:
            if isinstance(data.get(section), dict) and key in data[section]:
                raise SettingsError(
                    f"{self.path}: {section}.{key}: secrets are read only from the environment "
                    f"or .env ({env_name(section, key)}), never from the config file"
                )
        for key in _TOP_LEVEL_SECRETS:
            if key in data:
                raise SettingsError(
                    f"{self.path}: {key}: secrets are read only from the environment "
                    f"or .env ({env_name(key)}), never from the config file"
                )
        _check_unknown_keys(self.path, data, self.settings_cls, "")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        # One .env serves docker-compose too (POSTGRES_PASSWORD, SERVE_WORKERS): only
        # GATEWAY_ lines are ours, and an unknown GATEWAY_ line is still an error.
        dotenv_filtering="match_prefix",
    )

    config_file: Path | None = DEFAULT_CONFIG_FILE
    products_file: Path = DEFAULT_PRODUCTS_FILE
    data_dir: Path = Path("data")
    database_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line (for log shippers); "text" for a terminal.
    log_format: Literal["text", "json"] = "text"
    # Bearer token for GET /metrics; unset = /metrics is open (bind it to a private network).
    metrics_token: SecretStr | None = None
    # A provider whose every webhook failed its signature check this long: metric + error log.
    webhook_alarm_minutes: float = Field(default=10.0, gt=0)
    mail_backend: Literal["smtp", "console", "file"] = "console"
    mail_dir: Path | None = None
    # Orders stuck in created/pending this long are re-checked with the provider.
    reconcile_after_minutes: int = Field(default=15, ge=1)
    # Origins (scheme://host[:port]) of the seller's own sites: CORS for /purchase-options,
    # the JSON checkout and the embed script, and the Origin check on form posts.
    allowed_origins: list[str] = Field(default_factory=list)
    # Shared rate-limit budget for several workers/hosts; unset = in-process memory.
    redis_url: str | None = None
    stripe: StripeSettings = StripeSettings()
    btcpay: BtcpaySettings = BtcpaySettings()
    smtp: SmtpSettings = SmtpSettings()
    license: LicenseSettings = LicenseSettings()
    mail: MailSettings = MailSettings()
    limits: LimitsSettings = LimitsSettings()
    shop: ShopSettings = ShopSettings()
    reconcile: ReconcileSettings = ReconcileSettings()

    _provider_status: dict[str, tuple[bool, str]] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        if "config_file" in init_kwargs:
            raw = init_kwargs["config_file"]
        else:
            raw = os.environ.get(env_name("config_file"), DEFAULT_CONFIG_FILE)
        path = Path(raw) if raw not in (None, "") else None
        toml = _OperatorTomlSource(settings_cls, path)
        return (init_settings, env_settings, dotenv_settings, toml)

    _check_metrics_token = field_validator("metrics_token")(_reject_empty_secret)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _resolve_providers(self) -> Settings:
        status: dict[str, tuple[bool, str]] = {}
        candidates = (
            ("stripe", self.stripe.enabled, self.stripe.missing()),
            ("btcpay", self.btcpay.enabled, self.btcpay.missing(self.data_dir)),
        )
        for name, enabled, missing in candidates:
            if enabled is False:
                status[name] = (False, "disabled in config")
            elif not missing:
                status[name] = (True, "enabled")
            elif enabled is True:
                raise ValueError(
                    f"{name} is enabled ({env_name(name, 'enabled')}=true) but not "
                    f"configured; missing: {', '.join(missing)}"
                )
            else:
                status[name] = (False, f"disabled: {', '.join(missing)} not set")
        self._provider_status = status
        return self

    @property
    def provider_status(self) -> dict[str, tuple[bool, str]]:
        """Provider name -> (active, human reason), resolved once at load time."""
        return dict(self._provider_status)

    def is_active(self, provider: str) -> bool:
        return self._provider_status.get(provider, (False, ""))[0]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite://{(self.data_dir / 'gateway.sqlite3').resolve()}"

    @property
    def resolved_mail_dir(self) -> Path:
        return self.mail_dir or self.data_dir / "outbox"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from all sources, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            where = env_name(*loc) if loc else "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from exc
