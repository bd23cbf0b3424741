"""Option values coerced without pydantic, for the plain types pgq's options use.

Typer 0.29 coerces every parameter value (defaults included) through a pydantic
`TypeAdapter` that it builds on first use. Importing pydantic and building the adapters
costs more than importing psycopg, on every run of every command. The values pgq's
options take are mostly plain: a decimal integer, a decimal number, a string, a flag's
True/False, one of an Enum's values. `install` gives each such parameter a coercer that
handles exactly those values, with the result Typer's own would give, and hands anything
else (a malformed number, `1_000`, ` 5`, `yes` for a flag, a value that is not one of the
choices) to Typer's own coercion, so that what is accepted and every error message stay
Typer's (tests/test_startup.py compares the two on generated values).

It reaches into Typer's internals (`typer._coercion`, a parameter's `_runtime_param`),
which is why pyproject pins typer to one minor version: moving the pin means checking this
module against the new Typer, and tests/test_startup.py fails if it no longer fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, get_args, get_origin

import typer.core
from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
from typer._param_types import coerce_cli_choice

# Only canonical spellings: whatever pydantic would read differently (`007`, `1_000`,
# ` 5`, `1e3`, `inf`) falls through to Typer's own coercion.
_DECIMAL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_DECIMAL_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?")


class _Declined(Exception):
    """The fast path does not handle this value; Typer's own coercion decides."""


def _coerce_int(value: Any, ctx: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, str) and _DECIMAL_INT.fullmatch(value):
        return int(value)
    raise _Declined


def _coerce_float(value: Any, ctx: Any) -> float:
    if type(value) in (int, float):
        return float(value)
    if isinstance(value, str) and _DECIMAL_NUMBER.fullmatch(value):
        return float(value)
    raise _Declined


def _coerce_bool(value: Any, ctx: Any) -> bool:
    # A flag's own value; words such as "yes" or "0" (from an env var) are Typer's to read.
    if type(value) is bool:
        return value
    raise _Declined


def _coerce_str(value: Any, ctx: Any) -> str:
    if isinstance(value, str):
        return str(value)
    raise _Declined


def _leaf_coercer(annotation: Any, case_sensitive: bool) -> Any:
    """The fast coercer for one plain annotation, or None when there is none."""
    if annotation is int:
        return _coerce_int
    if annotation is float:
        return _coerce_float
    if annotation is str:
        return _coerce_str
    if annotation is bool:
        return _coerce_bool
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = tuple(annotation)

        def coerce_choice(value: Any, ctx: Any) -> Any:
            if not isinstance(value, (str, Enum)):
                raise _Declined
            try:
                return coerce_cli_choice(
                    value, choices=choices, case_sensitive=case_sensitive, ctx=ctx
                )
            except ValueError:
                raise _Declined from None

        return coerce_choice
    return None


@dataclass(frozen=True)
class _PlainRuntimeParam(RuntimeParam):
    """Coerces plain values itself; anything else goes to Typer's pydantic coercion."""

    descriptor: TypeDescriptor
    leaf: Any
    is_list: bool

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            if self.is_list:
                if not isinstance(value, (list, tuple)):
                    raise _Declined
                return [self.leaf(item, ctx) for item in value]
            return self.leaf(value, ctx)
        except _Declined:
            typer_own = build_runtime_param(self.descriptor)
            param._runtime_param = typer_own  # later values go straight to Typer's
            return typer_own._coerce_value(value, param=param, ctx=ctx)


def plain_runtime_param(descriptor: TypeDescriptor) -> RuntimeParam | None:
    """A pydantic-free coercer for this parameter, or None if its type is not plain."""
    info = descriptor.parameter_info
    if (
        descriptor.file_annotation is not None
        or info.parser is not None
        or info.min is not None
        or info.max is not None
        or info.clamp
    ):
        return None
    annotation: Any = descriptor.annotation
    is_list = get_origin(annotation) is list
    if is_list:
        (annotation,) = get_args(annotation)
    leaf = _leaf_coercer(annotation, bool(info.case_sensitive))
    if leaf is None:
        return None
    return _PlainRuntimeParam(
        parameter_info=info,
        annotation=descriptor.annotation,
        descriptor=descriptor,
        leaf=leaf,
        is_list=is_list,
    )


def install(command: Any, ctx: Any) -> None:
    """Give every plain parameter of `command` the fast coercer, then do the same for its
    subcommands. `ctx` is the context `command` parses in: its help option (made on first
    use, from the context's help option names) is a parameter like the others."""
    for param in (*command.params, command.get_help_option(ctx)):
        if (
            isinstance(param, typer.core._TyperParameter)
            and getattr(param, "_runtime_param", False) is None
        ):
            fast = plain_runtime_param(param.type_descriptor)
            if fast is not None:
                param._runtime_param = fast
    for name, subcommand in getattr(command, "commands", {}).items():
        install(subcommand, subcommand_context(subcommand, name, ctx))


def subcommand_context(command: Any, name: str, parent_ctx: Any) -> Any:
    """The context `command` will parse in when run as `name` under the group whose
    context is `parent_ctx`, made as click will make it."""
    return command.context_class(
        command, info_name=name, parent=parent_ctx, **command.context_settings
    )
