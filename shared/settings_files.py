"""Loading a process's one settings schema from flags, ``AGL_*`` env vars and a TOML file.

    class EdgeSettings(TomlFileSettings): ...
    settings = load_from(EdgeSettings, Path("edge.toml"), {"port": 9000}, env_prefix="AGL_")

Priority, highest first: overrides (CLI flags), environment variables, the TOML file, defaults.
Errors name the field, the rule and only the places that exist to set it (a flag only when the
CLI has one, see :func:`shared.cli_options.flags_for`); an unknown key gets a "did you mean"
suggestion. :func:`unknown_env_vars` finds ``AGL_*`` variables that set nothing, and
:func:`settings_toml` prints settings as TOML that loads back.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import tomli_w
from pydantic import BaseModel, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsError,
    TomlConfigSettingsSource,
)

from shared.cli_options import flags_for
from shared.errors import ConfigError

__all__ = [
    "TomlFileSettings",
    "format_validation_error",
    "load_from",
    "setting_source",
    "settings_toml",
    "unknown_env_vars",
]

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


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (directly, in a list, or optional), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, list):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _model_at(cls: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The model that holds the keys at ``path`` (list indexes skipped), or None."""
    model: type[BaseModel] | None = cls
    for part in path:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        model = _model_in(model.model_fields[part].annotation)
    return model


def _places(path: Sequence[str | int], *, env_prefix: str, flags: Mapping[str, str]) -> str:
    """Where ``path`` can be set: its flag (if one exists), env variable, config-file key."""
    top = str(path[0])
    keys = [p for p in path if isinstance(p, str)]
    places = []
    if len(path) == 1 and top in flags:
        places.append(f"flag {flags[top]}")
    if len(keys) == len(path):
        places.append(f"env {env_prefix}{'__'.join(k.upper() for k in keys)}")
    else:  # inside a list of tables: only the whole list has an env form
        places.append(f"env {env_prefix}{top.upper()} (JSON)")
    if len(path) == 1:
        places.append(f"`{top}` in the config file")
    elif isinstance(path[-2], int):
        table = ".".join(str(p) for p in path[:-2] if isinstance(p, str))
        places.append(f"`{path[-1]}` in [[{table}]] #{path[-2] + 1} of the config file")
    else:
        table = ".".join(str(p) for p in path[:-1] if isinstance(p, str))
        places.append(f"`{path[-1]}` in the [{table}] table of the config file")
    return f"  [{', '.join(places[:-1])}, or {places[-1]}]"


def format_validation_error(
    exc: ValidationError,
    *,
    env_prefix: str,
    cls: type[BaseModel] | None = None,
    flags: Mapping[str, str] | None = None,
) -> str:
    """Turn pydantic's error list into lines that name each field and where to set it.

    An unknown key names the closest real one ("did you mean `n_threads`?"); ``flags`` maps
    the fields that have a CLI flag to it, so no line names a flag that does not exist.
    """
    flags = flags or {}
    lines = []
    for err in exc.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(config)"
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
        if not loc:
            lines.append(f"{field}: {err['msg']}{shown}")
            continue
        if err["type"] == "extra_forbidden" and cls is not None:
            parent = _model_at(cls, loc[:-1])
            known = list(parent.model_fields) if parent is not None else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            if close:
                where = _places((*loc[:-1], close[0]), env_prefix=env_prefix, flags=flags)
                lines.append(f"{field}: unknown setting; did you mean `{close[0]}`?{where}")
            else:
                valid = ", ".join(known)
                lines.append(f"{field}: unknown setting; valid keys here: {valid}")
            continue
        where = _places(loc, env_prefix=env_prefix, flags=flags)
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
        message = format_validation_error(exc, env_prefix=env_prefix, cls=cls, flags=flags_for(cls))
        raise ConfigError(message) from exc
    except SettingsError as exc:  # an env var that should hold JSON (a list or a table) does not
        found = re.search(r'field "([^"]+)"', str(exc))
        name = env_prefix + (found.group(1).upper() if found else "…")
        raise ConfigError(
            f"invalid settings:\n  environment variable {name} is not valid JSON; a list or a "
            f"table set from the environment is written as JSON, e.g. {name}='[{{\"name\": …}}]'"
        ) from exc
    finally:
        _toml_file.reset(token)


def _env_path_known(cls: type[BaseModel], parts: list[str]) -> bool:
    model: type[BaseModel] | None = cls
    for i, part in enumerate(parts):
        if model is None:
            return False
        if part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = _model_in(annotation)
        if model is not None and get_origin(annotation) is list:
            return i == len(parts) - 1  # a list of tables: only the whole list, as JSON
    return True


def _env_names(cls: type[BaseModel]) -> list[str]:
    """Every env name below a prefix that sets something (nested tables joined by ``__``)."""
    names = []
    for name, field in cls.model_fields.items():
        names.append(name.upper())
        nested = _model_in(field.annotation)
        if nested is not None and get_origin(field.annotation) is not list:
            names += [f"{name.upper()}__{sub}" for sub in _env_names(nested)]
    return names


def _belongs_to_others(name: str, others: Sequence[str]) -> bool:
    # For the edge, others = ("AGL_HUB_",): AGL_HUB_NATS_URL is the hub's, but AGL_HUB__NATS_URL
    # (one more "_") is the edge's own [hub] table. For the hub, others = ("AGL_HUB__",).
    return any(name.startswith(o) and not name.startswith(o + "_") for o in others)


def unknown_env_vars(
    cls: type[BaseModel],
    *,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
    others: Sequence[str] = (),
) -> list[str]:
    """One warning per ``env_prefix*`` variable that sets no field of ``cls``.

    ``others`` are prefixes of other programs' variables that share ``env_prefix`` (the
    hub's ``AGL_HUB_`` next to the edge's ``AGL_``); they are not reported.
    """
    environ = os.environ if environ is None else environ
    valid = sorted(env_prefix + name for name in _env_names(cls))
    found = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(env_prefix) or _belongs_to_others(upper, others):
            continue
        parts = upper[len(env_prefix) :].lower().split("__")
        if _env_path_known(cls, parts):
            continue
        close = difflib.get_close_matches(upper, valid, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        found.append(f"environment variable {name} sets nothing and is ignored{hint}")
    return found


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def settings_toml(settings: BaseModel) -> str:
    """``settings`` as a TOML file that loads back to the same values.

    Unset (``None``) values are left out, since TOML has no null: the schema default (unset)
    is what loading the file gives back for them.
    """
    return tomli_w.dumps(_without_none(settings.model_dump(mode="json")))


def setting_source(
    field: str,
    *,
    overrides: Mapping[str, Any],
    config_file: Path | None,
    env_prefix: str,
    flags: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Where the effective value of top-level ``field`` came from, in words.

    ``flag --model-path``, ``env AGL_MODEL_PATH``, ```model_path` in edge.toml`` or
    ``the default``, following the priority of :func:`load_from`.
    """
    environ = os.environ if environ is None else environ
    if overrides.get(field) is not None:
        flag = (flags or {}).get(field, "--" + field.replace("_", "-"))
        return f"flag {flag}"
    env = env_prefix + field.upper()
    if any(name.upper() == env for name in environ):
        return f"env {env}"
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = {}
        if field in data:
            return f"`{field}` in {config_file}"
    return "the default"
