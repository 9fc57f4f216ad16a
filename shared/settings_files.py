"""Loading a process's one settings schema from flags, ``AGL_*`` env vars and a TOML file.

    class EdgeSettings(TomlFileSettings): ...
    settings = load_from(EdgeSettings, Path("edge.toml"), {"port": 9000}, env_prefix="AGL_")

Priority, highest first: overrides (CLI flags), environment variables, the TOML file, defaults.
"""

from __future__ import annotations

import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from shared.errors import ConfigError

_toml_file: ContextVar[Path | None] = ContextVar("agl_toml_file", default=None)

S = TypeVar("S", bound="TomlFileSettings")


class TomlFileSettings(BaseSettings):
    """Base of the settings schemas: adds the TOML file given to :func:`load_from` as a source."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _toml_file.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def format_validation_error(exc: ValidationError, *, env_prefix: str) -> str:
    """Turn pydantic's error list into lines that name each field and where to set it."""
    lines = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "(config)"
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
        top = str(err["loc"][0]) if err["loc"] else ""
        where = (
            f"  [flag --{top.replace('_', '-')}, env {env_prefix}{top.upper()}, "
            f"or `{top}` in the config file]"
            if top
            else ""
        )
        lines.append(f"{field}: {err['msg']}{shown}{where}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_from(
    cls: type[S], config_file: Path | None, overrides: dict[str, Any], *, env_prefix: str
) -> S:
    """Build ``cls`` from its sources; raise :class:`ConfigError` with a readable message."""
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        try:
            tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
    token = _toml_file.set(config_file)
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, env_prefix=env_prefix)) from exc
    finally:
        _toml_file.reset(token)
