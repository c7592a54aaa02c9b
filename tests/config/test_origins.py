"""Origins in settings: `origin_aliases` from the environment or the TOML file, in canonical
spelling, and anything that is not just `scheme://host[:port]` refused at load, by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.origins import canonical_origin, origin_of
from config.settings import SettingsError, load_settings


def test_aliases_come_from_the_environment_or_the_toml_file_canonically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "gateway.toml"
    toml.write_text('origin_aliases = ["HTTPS://Www.Example.com:443"]\n', encoding="utf-8")

    from_toml = load_settings(config_file=toml, _env_file=None)
    monkeypatch.setenv("GATEWAY_ORIGIN_ALIASES", '["http://[::1]:8000/", "http://a.example:80"]')
    from_env = load_settings(config_file=toml, _env_file=None)

    assert from_toml.origin_aliases == ["https://www.example.com"]
    assert from_env.origin_aliases == ["http://[::1]:8000", "http://a.example"]


@pytest.mark.parametrize(
    ("alias", "why"),
    [
        ("https://www.example.com/buy", "no path"),
        ("https://www.example.com?x=1", "no path"),
        ("https://www.example.com/#top", "no path"),
        ("https://user:pw@www.example.com", "no user name"),
        ("www.example.com", "scheme://host[:port]"),
        ("ftp://www.example.com", "scheme://host[:port]"),
        ("https://www.example.com:99999", "scheme://host[:port]"),
    ],
)
def test_an_alias_that_is_not_an_origin_stops_startup_naming_the_variable(
    alias: str, why: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(config_file=None, _env_file=None, origin_aliases=[alias])

    assert "GATEWAY_ORIGIN_ALIASES" in str(raised.value)
    assert why in str(raised.value)


def test_origin_of_reduces_a_url_and_canonical_origin_only_accepts_an_origin() -> None:
    assert origin_of("https://Shop.example:443/page?q=1") == "https://shop.example"
    assert origin_of("null") is None
    assert canonical_origin("http://LOCALHOST:8000") == "http://localhost:8000"
    with pytest.raises(ValueError, match="no path"):
        canonical_origin("http://localhost:8000/buy")
