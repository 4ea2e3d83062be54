"""Command-line options built from argument dataclasses, so each setting is defined once.

Every field of an argument dataclass becomes ``--field-name``; its help text is the string literal
written under the field (an attribute docstring, as litgpt/jsonargparse read them). Fields without a
default are required; ``list[...]`` fields may be repeated or comma-separated; ``bool`` fields are
flags. Validation stays in the dataclass's ``__post_init__``; its ``ValueError`` becomes a CLI error.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import typing


def field_docs(cls) -> dict[str, str]:
    """The attribute docstrings of a dataclass: ``{field: text}``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, following in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _parse_list(item_type):
    def parse(value: str):
        return [item_type(v.strip()) for v in value.split(",") if v.strip()]

    return parse


def add_arguments(parser: argparse.ArgumentParser, cls, positional: tuple[str, ...] = ()) -> None:
    """Add one option per field of ``cls``; fields named in ``positional`` become positionals."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        optional = type(None) in args
        if optional:
            hint = next(a for a in args if a is not type(None))
            origin, args = typing.get_origin(hint), typing.get_args(hint)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = docs.get(f.name, "")
        if f.name in positional:
            nargs = ("*" if has_default else "+") if origin is list else ("?" if has_default else None)
            parser.add_argument(f.name, nargs=nargs, default=default, help=help_text)
            continue
        flag = "--" + f.name.replace("_", "-")
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif origin is list:
            parser.add_argument(
                flag, type=_parse_list(args[0]), action="extend", required=not has_default,
                default=None, help=help_text + " (repeat or comma-separate)",
            )
        else:
            parser.add_argument(
                flag, type=hint, default=default, required=not has_default and not optional,
                help=help_text + (f" (default: {default})" if default not in (None, "") else ""),
            )


def build(cls, namespace: argparse.Namespace):
    """The dataclass instance from parsed arguments (lists left unset take the field default)."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(namespace, f.name, None)
        if value is None and f.default_factory is not dataclasses.MISSING:
            continue
        values[f.name] = value
    return cls(**values)
