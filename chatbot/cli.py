"""Command-line options built from argument dataclasses: a setting is written once, in its dataclass.

Every field of an argument dataclass becomes ``--field-name``; its help text is the string literal
written under the field (an attribute docstring, as litgpt/jsonargparse read them). Fields without a
default are required; ``list[...]`` fields may be repeated or comma-separated; ``bool`` fields are
flags. Validation stays in the dataclass's ``__post_init__``; its ``ValueError`` becomes a CLI error.

Shared settings are *composed*: a field whose type is itself a dataclass (``lora: LoraSettings``)
contributes that dataclass's fields, prefixed by ``metadata={"prefix": …}`` when given (``lora_`` turns
``r`` into ``--lora-r``). A dataclass may keep old flag names working through a class attribute
``cli_aliases = {"old_name": "new_name"}`` (flattened names, underscores).
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


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _unwrap(hint):
    """(type, origin, args) with ``X | None`` reduced to X."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if type(None) in args:
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    return hint, origin, args


def flat_fields(cls, prefix: str = "", defaults=None):
    """``(name, field, hint, default, doc)`` of every leaf setting of ``cls``, nested ones flattened.

    ``defaults`` is an instance whose values override the fields' own defaults (a composing
    dataclass may give a nested one other defaults through its ``default_factory``)."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, _, _ = _unwrap(hints[f.name])
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        if dataclasses.is_dataclass(hint):
            yield from flat_fields(hint, prefix + f.metadata.get("prefix", ""),
                                   default if default is not dataclasses.MISSING else None)
        else:
            yield prefix + f.name, f, hints[f.name], default, docs.get(f.name, "")


def add_arguments(parser: argparse.ArgumentParser, cls, positional: tuple[str, ...] = ()) -> None:
    """Add one option per leaf setting of ``cls``; names in ``positional`` become positionals."""
    aliases: dict[str, list[str]] = {}
    for old, new in getattr(cls, "cli_aliases", {}).items():
        aliases.setdefault(new, []).append(old)
    seen = set()
    for name, f, hint, default, help_text in flat_fields(cls):
        assert name not in seen, f"{cls.__name__}: two settings would both be --{name}"
        seen.add(name)
        hint, origin, args = _unwrap(hint)
        has_default = default is not dataclasses.MISSING
        default = default if has_default else None
        if name in positional:
            nargs = ("*" if has_default else "+") if origin is list else ("?" if has_default else None)
            parser.add_argument(name, nargs=nargs, default=default, help=help_text)
            continue
        flags = ["--" + n.replace("_", "-") for n in (name, *aliases.get(name, []))]
        if hint is bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        elif origin is list:
            parser.add_argument(*flags, dest=name, type=_parse_list(args[0]), action="extend",
                                required=not has_default, default=None,
                                help=help_text + (f" (repeat or comma-separate; default: {','.join(map(str, default))})"
                                                  if default else " (repeat or comma-separate)"))
        else:
            parser.add_argument(*flags, dest=name, type=hint, default=default, required=not has_default,
                                help=help_text + (f" (default: {default})" if default not in (None, "") else ""))


def build(cls, namespace: argparse.Namespace, prefix: str = "", defaults=None):
    """The dataclass instance from parsed arguments (lists left unset take their default)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        hint, _, _ = _unwrap(hints[f.name])
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        if dataclasses.is_dataclass(hint):
            values[f.name] = build(hint, namespace, prefix + f.metadata.get("prefix", ""),
                                   default if default is not dataclasses.MISSING else None)
            continue
        value = getattr(namespace, prefix + f.name, None)
        if value is None and default is not dataclasses.MISSING:
            value = default
        values[f.name] = value
    return cls(**values)
