"""Typed operator settings.

Sources, lowest to highest precedence: defaults < the operator TOML file < `.env` < the
process environment < keyword arguments. Non-secret settings may live in the TOML file;
secrets (`SecretStr` fields) are refused there and read only from the environment or
`.env`, so a config file can be committed or shared without leaking keys.

Env names are `GATEWAY_<FIELD>` and `GATEWAY_<SECTION>__<FIELD>`. Build `Settings` once
(`load_settings()`) and pass it in; nothing in the project reads a global settings object.
The sections live in `config.sections`, the TOML file reading in `config.loading`; their
names are importable from here too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from config.env import ENV_PREFIX, SettingsError, env_name
from config.loading import OperatorTomlSource
from config.origins import canonical_origin
from config.sections import (
    BtcpaySettings,
    LicenseSettings,
    LimitsSettings,
    MailSettings,
    ProviderSettings,
    ReconcileSettings,
    ShopSettings,
    SmtpSettings,
    StripeSettings,
    Toggle,
    reject_empty_secret,
    trusted_networks,
)

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_PRODUCTS_FILE",
    "ENV_PREFIX",
    "BtcpaySettings",
    "LicenseSettings",
    "LimitsSettings",
    "MailSettings",
    "ProviderSettings",
    "ReconcileSettings",
    "Settings",
    "SettingsError",
    "ShopSettings",
    "SmtpSettings",
    "StripeSettings",
    "Toggle",
    "env_name",
    "load_settings",
]

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG_FILE = CONFIG_DIR / "gateway.toml"
DEFAULT_PRODUCTS_FILE = CONFIG_DIR / "products.toml"


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
    # Bearer token for GET /metrics. Unset, /metrics answers 404 unless `metrics_public`
    # opens it to anyone who reaches the port (it shows sales counts).
    metrics_token: SecretStr | None = None
    metrics_public: bool = False
    # A provider whose every webhook failed its signature check this long: metric + error log.
    webhook_alarm_minutes: float = Field(default=10.0, gt=0)
    mail_backend: Literal["smtp", "console", "file"] = "console"
    mail_dir: Path | None = None
    # Orders stuck in created/pending this long are re-checked with the provider.
    reconcile_after_minutes: int = Field(default=15, ge=1)
    # Origins (scheme://host[:port]) of the seller's own sites: CORS for /purchase-options,
    # the JSON checkout and the embed script, and the Origin check on form posts.
    allowed_origins: list[str] = Field(default_factory=list)
    # Other origins this gateway itself answers on (a `www.` twin, another port): its own
    # pages posted from there are accepted as from `public_url`.
    origin_aliases: list[str] = Field(default_factory=list)
    # Shared rate-limit budget for several workers/hosts; unset = in-process memory.
    redis_url: str | None = None
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDRs; env: comma-
    # separated). The client is the right-most hop that is not one of them.
    trusted_proxies: Annotated[list[str], NoDecode] = ["127.0.0.0/8", "::1/128"]
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
        toml = OperatorTomlSource(settings_cls, path)
        return (init_settings, env_settings, dotenv_settings, toml)

    _check_metrics_token = field_validator("metrics_token")(reject_empty_secret)
    _check_proxies = field_validator("trusted_proxies", mode="before")(trusted_networks)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("origin_aliases")
    @classmethod
    def _origin_aliases(cls, value: list[str]) -> list[str]:
        return [canonical_origin(origin) for origin in value]

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
