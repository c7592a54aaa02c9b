"""Typos in the operator TOML are startup errors naming file and key, with a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("toml", "key", "hint"),
    [
        ('public_ur = "http://x"\n', "public_ur", "did you mean 'public_url'?"),
        ('[smtp]\nhots = "relay"\n', "smtp.hots", "did you mean 'host'?"),
        ("[mail]\nsender_in_sevre = false\n", "mail.sender_in_sevre", "'sender_in_serve'"),
        ('[limits]\ncheckout_per_ipp = "1/minute"\n', "limits.checkout_per_ipp", "per_ip'"),
        ("[stripe]\nzzz = 1\n", "stripe.zzz", "GATEWAY_STRIPE__ZZZ is not a setting"),
    ],
)
def test_unknown_operator_key_is_named_with_file_and_suggestion(
    tmp_path: Path, toml: str, key: str, hint: str
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(toml)

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=path, _env_file=None)

    assert str(err.value).startswith(f"{path}: {key}: unknown key")
    assert hint in str(err.value)


def test_known_keys_and_aliases_load(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[smtp]\nfrom = "shop@example.com"\n[mail]\nsender_in_serve = false\n')

    settings = load_settings(config_file=path, _env_file=None)

    assert settings.smtp.sender == "shop@example.com"
    assert settings.mail.sender_in_serve is False
