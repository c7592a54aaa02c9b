"""Settings: source precedence, env names, and startup errors that name what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import DEFAULT_CONFIG_FILE, Settings, SettingsError, env_name, load_settings

STRIPE_SECRETS = {
    "GATEWAY_STRIPE__SECRET_KEY": "sk_test_123",
    "GATEWAY_STRIPE__WEBHOOK_SECRET": "whsec_123",
}
BTCPAY_SECRETS = {
    "GATEWAY_BTCPAY__URL": "https://btcpay.test",
    "GATEWAY_BTCPAY__STORE_ID": "store1",
    "GATEWAY_BTCPAY__API_KEY": "apikey",
    "GATEWAY_BTCPAY__WEBHOOK_SECRET": "hooksecret",
}


def _toml(tmp_path: Path, text: str, name: str = "gateway.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _setenv(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_env_name_builds_prefixed_upper_case_nested_names() -> None:
    assert env_name("stripe", "webhook_secret") == "GATEWAY_STRIPE__WEBHOOK_SECRET"
    assert env_name("public_url") == "GATEWAY_PUBLIC_URL"


def test_defaults_apply_without_any_source() -> None:
    settings = Settings(config_file=None, _env_file=None)

    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.stripe.label == "Pay with Card"
    assert settings.btcpay.order == 1
    assert settings.stripe.enabled == "auto"


def test_toml_overrides_defaults_and_env_overrides_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a TOML that sets three values, and env that overrides one of them
    path = _toml(
        tmp_path,
        'public_url = "https://toml.example"\nlog_level = "WARNING"\n'
        '[stripe]\nlabel = "TOML card"\nfee_hint = "TOML fee"\n',
    )
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", "https://env.example/")
    monkeypatch.setenv("GATEWAY_STRIPE__LABEL", "Env card")

    settings = Settings(config_file=path, _env_file=None)

    assert settings.public_url == "https://env.example"  # env beats TOML, slash trimmed
    assert settings.log_level == "WARNING"  # TOML beats default
    assert settings.stripe.label == "Env card"  # nested env beats nested TOML
    assert settings.stripe.fee_hint == "TOML fee"  # sibling TOML key kept (deep merge)
    assert settings.stripe.speed_hint == "instant"  # default kept


def test_config_file_can_be_chosen_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _toml(tmp_path, '[btcpay]\nlabel = "Sats"\n')
    monkeypatch.setenv("GATEWAY_CONFIG_FILE", str(path))

    settings = Settings(_env_file=None)

    assert settings.btcpay.label == "Sats"


def test_nested_env_variables_enable_a_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, {"GATEWAY_STRIPE__ENABLED": "true", **STRIPE_SECRETS})
    monkeypatch.setenv("GATEWAY_STRIPE__ORDER", "7")

    settings = Settings(config_file=None, _env_file=None)

    assert settings.stripe.enabled is True
    assert settings.stripe.order == 7
    assert settings.stripe.secret_key is not None
    assert settings.stripe.secret_key.get_secret_value() == "sk_test_123"
    assert settings.is_active("stripe")
    assert settings.provider_status["stripe"] == (True, "enabled")


def test_dotenv_file_is_read_and_process_env_beats_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "GATEWAY_PUBLIC_URL=https://dotenv.example\n"
        "GATEWAY_STRIPE__SECRET_KEY=sk_test_dotenv\n"
        "GATEWAY_STRIPE__WEBHOOK_SECRET=whsec_dotenv\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("GATEWAY_STRIPE__SECRET_KEY", "sk_test_env")

    settings = Settings(config_file=None, _env_file=dotenv)

    assert settings.public_url == "https://dotenv.example"
    assert settings.stripe.secret_key is not None
    assert settings.stripe.secret_key.get_secret_value() == "sk_test_env"
    assert settings.is_active("stripe")  # "auto" + secrets from .env -> on


@pytest.mark.parametrize("missing", sorted(STRIPE_SECRETS))
def test_stripe_enabled_true_without_a_secret_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _setenv(monkeypatch, {k: v for k, v in STRIPE_SECRETS.items() if k != missing})
    monkeypatch.setenv("GATEWAY_STRIPE__ENABLED", "true")

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=None, _env_file=None)

    assert missing in str(err.value)
    assert "GATEWAY_STRIPE__ENABLED=true" in str(err.value)


@pytest.mark.parametrize("missing", sorted(BTCPAY_SECRETS))
def test_btcpay_enabled_true_without_a_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _setenv(monkeypatch, {k: v for k, v in BTCPAY_SECRETS.items() if k != missing})
    monkeypatch.setenv("GATEWAY_BTCPAY__ENABLED", "true")

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=None, _env_file=None)

    assert missing in str(err.value)


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
@pytest.mark.parametrize("variable", ["GATEWAY_STRIPE__WEBHOOK_SECRET", "GATEWAY_BTCPAY__API_KEY"])
def test_empty_or_whitespace_secret_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, blank: str
) -> None:
    monkeypatch.setenv(variable, blank)

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=None, _env_file=None)

    assert f"{variable}: must not be empty" in str(err.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("stripe", "secret_key"),
        ("stripe", "webhook_secret"),
        ("btcpay", "api_key"),
        ("btcpay", "webhook_secret"),
        ("smtp", "password"),
    ],
)
def test_secret_in_the_toml_file_is_refused_naming_file_and_key(
    tmp_path: Path, section: str, key: str
) -> None:
    path = _toml(tmp_path, f'[{section}]\n{key} = "leaked"\n')

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=path, _env_file=None)

    message = str(err.value)
    assert str(path) in message
    assert f"{section}.{key}" in message
    assert env_name(section, key) in message
    assert "leaked" not in message


def test_missing_config_file_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nope.toml"
    monkeypatch.setenv("GATEWAY_CONFIG_FILE", str(path))

    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)

    assert f"{path}: config file not found" in str(err.value)
    assert "GATEWAY_CONFIG_FILE" in str(err.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "public_url = \n[stripe\n")

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=path, _env_file=None)

    assert f"{path}: invalid TOML" in str(err.value)


def test_unknown_toml_key_names_the_variable(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[stripe]\nlabl = 'typo'\n")

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=path, _env_file=None)

    assert "GATEWAY_STRIPE__LABL" in str(err.value)


def test_auto_without_secrets_is_inactive_with_reason_naming_the_variables() -> None:
    settings = Settings(config_file=None, _env_file=None)

    stripe_on, stripe_reason = settings.provider_status["stripe"]
    btcpay_on, btcpay_reason = settings.provider_status["btcpay"]
    assert not stripe_on
    assert not btcpay_on
    for name in STRIPE_SECRETS:
        assert name in stripe_reason
    for name in BTCPAY_SECRETS:
        assert name in btcpay_reason


def test_enabled_false_is_inactive_even_with_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    _setenv(monkeypatch, {"GATEWAY_STRIPE__ENABLED": "false", **STRIPE_SECRETS})

    settings = Settings(config_file=None, _env_file=None)

    assert settings.provider_status["stripe"] == (False, "disabled in config")


def test_sample_config_loads_with_both_providers_off_without_secrets() -> None:
    settings = load_settings(config_file=DEFAULT_CONFIG_FILE, _env_file=None)

    assert settings.config_file == DEFAULT_CONFIG_FILE
    assert not settings.is_active("stripe")
    assert not settings.is_active("btcpay")
    assert settings.smtp.sender == "licenses@localhost"  # `from` alias in the TOML


def test_legacy_btcpay_without_pairing_files_names_the_files_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_BTCPAY__MODE", "legacy")
    monkeypatch.setenv("GATEWAY_BTCPAY__URL", "https://btcpay.test")
    monkeypatch.setenv("GATEWAY_BTCPAY__ENABLED", "true")

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=None, _env_file=None, data_dir=tmp_path)

    message = str(err.value)
    assert "GATEWAY_BTCPAY__LEGACY_KEY_FILE" in message
    assert "GATEWAY_BTCPAY__LEGACY_TOKEN_FILE" in message
    assert str(tmp_path / "btcpay_legacy_key.pem") in message
    assert "btcpay pair" in message


def test_legacy_btcpay_auto_without_pairing_files_is_off(tmp_path: Path) -> None:
    settings = Settings(
        config_file=None,
        _env_file=None,
        data_dir=tmp_path,
        btcpay={"mode": "legacy", "url": "https://btcpay.test"},
    )

    active, reason = settings.provider_status["btcpay"]
    assert not active
    assert "btcpay pair" in reason


def test_legacy_btcpay_with_pairing_files_is_active(tmp_path: Path) -> None:
    (tmp_path / "btcpay_legacy_key.pem").write_text("key", encoding="utf-8")
    (tmp_path / "btcpay_legacy_token.json").write_text("{}", encoding="utf-8")

    settings = Settings(
        config_file=None,
        _env_file=None,
        data_dir=tmp_path,
        btcpay={"mode": "legacy", "url": "https://btcpay.test"},
    )

    assert settings.is_active("btcpay")


@pytest.mark.parametrize("url", ["ftp://x.example", "gateway.example", ""])
def test_bad_public_url_names_the_variable(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", url)

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=None, _env_file=None)

    assert "GATEWAY_PUBLIC_URL: must start with http:// or https://" in str(err.value)


def test_load_settings_wraps_validation_errors_naming_nested_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_SMTP__PORT", "70000")
    monkeypatch.setenv("GATEWAY_LOG_LEVEL", "CHATTY")

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=None, _env_file=None)

    message = str(err.value)
    assert message.startswith("invalid settings:")
    assert "GATEWAY_SMTP__PORT" in message
    assert "GATEWAY_LOG_LEVEL" in message
    assert isinstance(err.value.__cause__, ValidationError)


def test_database_url_defaults_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = Settings(config_file=None, _env_file=None, data_dir=tmp_path)

    assert settings.resolved_database_url == f"sqlite://{tmp_path.resolve()}/gateway.sqlite3"
    assert settings.resolved_mail_dir == tmp_path / "outbox"
