"""Reading the operator TOML file: secrets refused, unknown keys named with a suggestion.

The file is one settings source among others (see `config.settings`); a typo or a secret in
it is a startup error naming the file and the key.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from config.env import SettingsError, env_name

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


class OperatorTomlSource(PydanticBaseSettingsSource):
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
