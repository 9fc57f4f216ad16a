"""Click options generated from a settings schema, so flags cannot drift from it.

Each option takes its flag name, type, help text and shown default from one pydantic field.
Every option defaults to ``None`` (unset), and :func:`~shared.settings_files.load_from` drops
``None`` overrides, so only the flags a user passes win; the order stays flags > ``AGL_*``
environment variables > TOML file > schema defaults.

    @click.command()
    @settings_options(
        EdgeSettings,
        fields=["port", "request_timeout_s"],
        flag_names={"request_timeout_s": "--request-timeout"},
    )
    def run(**overrides: Any) -> None:
        settings = load_settings(None, **overrides)

Types: ``int``, ``float`` and ``str`` map to themselves, ``Path`` to ``click.Path``, ``bool`` to
a ``--x/--no-x`` pair, a ``Literal`` of strings to ``click.Choice``, and ``X | None`` to ``X``.
Any other type (lists, nested tables) has no flag form and raises ``TypeError`` at import time.

The ``[default: …]`` shown in ``--help`` is the first of: ``shown_defaults[field]``, the field's
``json_schema_extra={"cli_default": …}``, the field's default, or its ``default_factory()``.
Use one of the first two when the real default depends on the machine ("all cores").
A field whose default is ``None`` and that has neither shows no default.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["CLI_DEFAULT_KEY", "SettingsOption", "flags_for", "settings_options"]

CLI_DEFAULT_KEY = "cli_default"
"""Key in a field's ``json_schema_extra`` that holds the default as ``--help`` should show it."""

FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)

# Which fields of a schema have a flag, filled as the CLI modules declare their options, so a
# settings error names a flag only when one exists (and under its real name).
_FLAGS: dict[type[BaseModel], dict[str, str]] = {}


def flags_for(settings_cls: type[BaseModel]) -> dict[str, str]:
    """``{field: "--flag"}`` of every option generated for ``settings_cls`` so far."""
    return dict(_FLAGS.get(settings_cls, {}))


class SettingsOption(click.Option):
    """A click option generated from one settings field.

    ``field_name`` is the field it sets (also the parameter name the command receives) and
    ``shown_default`` the text after ``default:`` in ``--help`` (``None`` when none is shown).
    """

    def __init__(
        self, *args: Any, field_name: str, shown_default: str | None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.field_name = field_name
        self.shown_default = shown_default


def settings_options(
    settings_cls: type[BaseModel],
    *,
    fields: Sequence[str],
    flag_names: Mapping[str, str] | None = None,
    shown_defaults: Mapping[str, str] | None = None,
) -> Callable[[FC], FC]:
    """Decorator adding one option per field in ``fields``, in that order, to a click command.

    ``flag_names`` renames flags (``{"request_timeout_s": "--request-timeout"}``); the default
    is the field name with ``-`` for ``_``. ``shown_defaults`` overrides the default shown in
    ``--help`` for fields whose real default depends on the machine.
    """
    flag_names = flag_names or {}
    shown_defaults = shown_defaults or {}
    unknown = sorted((set(flag_names) | set(shown_defaults)) - set(fields))
    if unknown:
        raise TypeError(f"flag_names/shown_defaults name fields not in `fields`: {unknown}")
    flags = {name: flag_names.get(name, "--" + name.replace("_", "-")) for name in fields}
    decorators = [
        _option(settings_cls, name, flag=flag, shown_default=shown_defaults.get(name))
        for name, flag in flags.items()
    ]
    _FLAGS.setdefault(settings_cls, {}).update(flags)

    def decorate(fn: FC) -> FC:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return decorate


def _option(
    settings_cls: type[BaseModel], name: str, *, flag: str, shown_default: str | None
) -> Callable[[FC], FC]:
    where = f"{settings_cls.__name__}.{name}"
    field = settings_cls.model_fields.get(name)
    if field is None:
        raise TypeError(f"{where} is not a settings field; rename the flag or the field")
    if not field.description:
        raise TypeError(f"{where} has no description=; it is the flag's help text")
    if not flag.startswith("--"):
        raise TypeError(f"{where}: flag name {flag!r} must start with --")
    annotation = _without_none(where, field.annotation)
    shown = shown_default if shown_default is not None else _schema_default(field)
    attrs: dict[str, Any] = {}
    decls = [flag, name]
    if annotation is bool:
        decls = [f"{flag}/--no-{flag[2:]}", name]
        if isinstance(shown, bool):
            shown = flag if shown else f"--no-{flag[2:]}"
    else:
        attrs["type"] = _click_type(where, annotation)
    help_text = field.description if shown is None else f"{field.description} [default: {shown}]"
    return click.option(
        *decls,
        cls=SettingsOption,
        field_name=name,
        shown_default=None if shown is None else str(shown),
        default=None,
        show_default=False,
        help=help_text,
        **attrs,
    )


def _without_none(where: str, annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{where}: {annotation} has no flag form (a union of several types)")
        return rest[0]
    return annotation


# Any, not click.ParamType: that class is generic only in newer click, and click>=8.1 is allowed.
def _click_type(where: str, annotation: Any) -> Any:
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        if not all(isinstance(c, str) for c in choices):
            raise TypeError(f"{where}: only Literal of strings has a flag form, got {annotation}")
        return click.Choice(choices)
    if annotation in (int, float, str):
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return click.Path(path_type=Path)
    raise TypeError(
        f"{where}: {annotation} has no flag form; set it in the TOML file or an env var instead"
    )


def _schema_default(field: FieldInfo) -> Any:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and CLI_DEFAULT_KEY in extra:
        return extra[CLI_DEFAULT_KEY]
    default = field.get_default(call_default_factory=True)
    return None if default is PydanticUndefined else default
