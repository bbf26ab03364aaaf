"""``ServeOptions`` on the command line: one flag per field, generated, never copied.

Each field of :class:`~course_ws.options.ServeOptions` becomes a
``course-ws serve`` flag: ``max_size`` becomes ``--max-size``, its docstring
becomes the flag's help, its annotation says how the flag reads text
(``Bytes`` reads ``64KiB``, ``Seconds`` reads ``500ms``, ``... | None`` also
reads ``off``, a ``Literal`` lists its choices) and its default is shown the
way the flag would write it. Nothing here names a field, so a field added to
the dataclass is a flag at once; a field without a docstring is refused.

    >>> parser = argparse.ArgumentParser()
    >>> add_option_flags(parser, ServeOptions())
    >>> options_from_args(parser.parse_args(["--ping-interval", "off"])).ping_interval is None
    True
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import itertools
import math
import re
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Annotated, Any, Literal, get_args, get_origin

from course_ws.options import ServeOptions, Unit

SIZE_UNITS: Mapping[str, int] = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
}
"""Suffixes a size may carry, in any case: ``KiB`` is 1024 bytes, ``kB`` 1000."""
DURATION_UNITS: Mapping[str, Fraction] = {
    "": Fraction(1),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
    "m": Fraction(60),
    "min": Fraction(60),
    "h": Fraction(3600),
}
"""Suffixes a duration may carry; a bare number is seconds."""
NONE_WORDS = ("off", "none")
"""What an optional field (``float | None``) reads as ``None``."""

_NUMBER_WITH_UNIT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")


# -- reading and writing values ---------------------------------------------------


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``64KiB``, ``1MiB``, ``1MB`` or ``1.5MiB``; ValueError otherwise."""
    found = _NUMBER_WITH_UNIT.fullmatch(text)
    if found is None or found[2].lower() not in SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size")
    size = Fraction(found[1]) * SIZE_UNITS[found[2].lower()]
    if size.denominator != 1:
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(size)


def parse_duration(text: str) -> float:
    """Seconds from ``20s``, ``500ms``, ``1.5`` or ``2m``; ValueError otherwise (negatives too)."""
    found = _NUMBER_WITH_UNIT.fullmatch(text)
    if found is None or found[2].lower() not in DURATION_UNITS:
        raise ValueError(f"{text!r} is not a duration")
    try:
        seconds = float(Fraction(found[1]) * DURATION_UNITS[found[2].lower()])
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is too long a duration")
    return seconds


def format_size(size: int) -> str:
    """The shortest exact way to write ``size``: ``1MiB``, ``64KiB``, ``1MB``, ``1000``."""
    for suffix in ("GiB", "MiB", "KiB", "GB", "MB", "kB"):
        factor = SIZE_UNITS[suffix.lower()]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def format_duration(seconds: float) -> str:
    """A duration as the command line writes it: ``20s``, ``1.5s``, ``500ms``."""
    if 0 < seconds < 1 and (seconds * 1000).is_integer():
        return f"{_number(seconds * 1000)}ms"
    return f"{_number(seconds)}s"


def _number(value: float) -> str:
    """``20`` rather than ``20.0``, and never an exponent that the parsers would refuse."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def _parse_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if math.isnan(number):
        raise ValueError(f"{text!r} is not a number")
    return number


def _parse_switch(text: str) -> bool:
    word = text.strip().lower()
    if word in ("on", "yes", "true", "1"):
        return True
    if word in ("off", "no", "false", "0"):
        return False
    raise ValueError(f"{text!r} is not on or off")


@dataclass(frozen=True)
class Reader:
    """How the command line reads one kind of value, and writes it back in ``--help``."""

    parse: Callable[[str], Any]
    """Text to value; raises ValueError with a message that quotes the text."""
    show: Callable[[Any], str] = str
    """Value to text that ``parse`` reads back, for the defaults that ``--help`` shows."""
    metavar: str | None = None
    """The placeholder ``--help`` shows (``SIZE``); the field's name in capitals if None."""
    examples: tuple[str, ...] = ()
    """Good values, quoted in the error for a bad one."""


SIZE = Reader(parse_size, format_size, "SIZE", ("65536", "64KiB", "1MiB"))
DURATION = Reader(parse_duration, format_duration, "DURATION", ("20s", "500ms", "1.5", "2m"))
UNIT_READERS: Mapping[Unit, Reader] = {Unit.BYTES: SIZE, Unit.SECONDS: DURATION}
"""The reader of every :class:`~course_ws.options.Unit`."""
_PLAIN_READERS: Mapping[type, Reader] = {
    int: Reader(_parse_int, metavar="N"),
    float: Reader(_parse_float, _number, "NUMBER"),
    bool: Reader(_parse_switch, lambda on: "on" if on else "off", "on|off"),
}


def _choice_reader(choices: tuple[str, ...]) -> Reader:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(
                f"invalid choice: {text!r} (choose from {', '.join(map(str, choices))})"
            )
        return text

    return Reader(parse, metavar="{" + ",".join(choices) + "}")


def _class_reader(kind: type) -> Reader:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except (TypeError, ValueError):
            raise ValueError(f"{text!r} is not a valid {kind.__name__}") from None

    return Reader(parse)


# -- one flag per field -----------------------------------------------------------


@dataclass(frozen=True)
class OptionFlag:
    """One ``ServeOptions`` field as ``course-ws serve`` sees it."""

    name: str
    """The field: ``max_size``."""
    flag: str
    """The flag: ``--max-size``."""
    help: str
    """The field's docstring, on one line."""
    reader: Reader
    """How the flag reads text and writes values, chosen by the field's annotation."""
    optional: bool = False
    """Whether ``off``/``none`` reads as ``None``."""
    repeatable: bool = False
    """A ``tuple[X, ...]`` field: each use of the flag adds one item."""

    def parse(self, text: str) -> Any:
        """Read one command-line value; ArgumentTypeError (one line) if it is not one."""
        if self.optional and text.strip().lower() in NONE_WORDS:
            return None
        try:
            return self.reader.parse(text)
        except ValueError as exc:
            examples = (*self.reader.examples, *(NONE_WORDS[:1] if self.optional else ()))
            hint = f" (examples: {', '.join(examples)})" if examples else ""
            raise argparse.ArgumentTypeError(f"{exc}{hint}") from None

    def show(self, value: Any) -> str:
        """A value the way this flag would be written: ``1MiB``, ``20s``, ``off``."""
        if value is None:
            return NONE_WORDS[0]
        if self.repeatable:
            return ", ".join(self.reader.show(item) for item in value) or "none"
        return self.reader.show(value)

    @property
    def metavar(self) -> str:
        """What ``--help`` shows after the flag: ``SIZE``, ``DURATION|off``."""
        metavar = self.reader.metavar or self.name.upper()
        return f"{metavar}|{NONE_WORDS[0]}" if self.optional else metavar


@functools.cache
def field_docs(cls: type) -> Mapping[str, str]:
    """The docstring under each field of a class, read from its source: ``{name: text}``.

    Python keeps no such string at run time, so the class's source is parsed
    with :mod:`ast` (once per class): a string statement right after an
    annotated assignment documents that field, as Sphinx reads it too.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return types.MappingProxyType(docs)


def _help_text(docstring: str) -> str:
    """One line of plain text for ``--help``: no reST ``literals``, ``%`` escaped for argparse."""
    plain = re.sub(r"``(.+?)``", r"\1", " ".join(docstring.split()))
    return plain.replace("%", "%%")


def _unwrap(hint: Any) -> tuple[Any, Unit | None, bool, bool]:
    """``Seconds | None`` → ``(float, Unit.SECONDS, optional, not repeatable)``."""
    unit, optional, repeatable = None, False, False
    while True:
        origin, args = get_origin(hint), get_args(hint)
        if origin is Annotated:
            hint = args[0]
            unit = next((extra for extra in args[1:] if isinstance(extra, Unit)), unit)
        elif origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
            optional = True
            hint = next(arg for arg in args if arg is not type(None))
        elif origin is tuple and len(args) == 2 and args[1] is Ellipsis and not repeatable:
            repeatable = True
            hint = args[0]
        else:
            return hint, unit, optional, repeatable


def _reader_for(owner: str, hint: Any, unit: Unit | None) -> Reader:
    if unit is not None:
        reader = UNIT_READERS[unit]
        if hint not in (int, float) or (unit is Unit.BYTES and hint is not int):
            raise TypeError(f"{owner}: {unit} does not fit the type {hint!r}")
        return reader
    if get_origin(hint) is Literal:
        return _choice_reader(tuple(map(str, get_args(hint))))
    if hint is str:
        return Reader(str)
    if hint in _PLAIN_READERS:
        return _PLAIN_READERS[hint]
    if isinstance(hint, type):
        return _class_reader(hint)
    raise TypeError(f"{owner}: no command-line flag can read the type {hint!r}")


def option_flags(cls: type = ServeOptions) -> tuple[OptionFlag, ...]:
    """One :class:`OptionFlag` per field of a dataclass, in field order.

    Raises TypeError for a field without a docstring or of a type no flag can
    read: both are bugs in the dataclass, and the tests build every flag.
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    flags: list[OptionFlag] = []
    for field in fields(cls):
        owner = f"{cls.__name__}.{field.name}"
        if not docs.get(field.name):
            raise TypeError(
                f"{owner} has no docstring: write one line under the field saying what it "
                f"does; it is the --help text of --{field.name.replace('_', '-')}"
            )
        hint, unit, optional, repeatable = _unwrap(hints[field.name])
        flags.append(
            OptionFlag(
                name=field.name,
                flag="--" + field.name.replace("_", "-"),
                help=_help_text(docs[field.name]),
                reader=_reader_for(owner, hint, unit),
                optional=optional,
                repeatable=repeatable,
            )
        )
    return tuple(flags)


class _Repeat(argparse.Action):
    """Each use of the flag adds an item; the first use replaces the default."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        items = getattr(namespace, self.dest)
        setattr(namespace, self.dest, (*(() if items is self.default else items), values))


def add_option_flags(parser: argparse.ArgumentParser, defaults: ServeOptions) -> None:
    """Add one flag per ``ServeOptions`` field, with ``defaults``' values as the defaults."""
    for option in option_flags(type(defaults)):
        default = getattr(defaults, option.name)
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=option.parse,
            default=default,
            metavar=option.metavar,
            action=_Repeat if option.repeatable else "store",
            help=f"{option.help} ({'repeatable; ' if option.repeatable else ''}"
            f"default: {_help_text(option.show(default))})",
        )


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """The ``ServeOptions`` that parsed flags describe.

    A combination that ``ServeOptions`` refuses raises ValueError, its message
    speaking of flags (``--max-size``) rather than fields (``max_size``).
    """
    values = {option.name: getattr(args, option.name) for option in option_flags()}
    try:
        return ServeOptions(**values)
    except ValueError as exc:
        raise ValueError(in_flag_words(str(exc))) from None


def in_flag_words(message: str) -> str:
    """A ServeOptions error in command-line words.

    ``ping_interval must be positive or None`` becomes
    ``--ping-interval must be positive or off``.
    """
    for option in option_flags():
        message = re.sub(rf"(?<![\w-]){option.name}(?![\w-])", option.flag, message)
    return re.sub(r"\bNone\b", NONE_WORDS[0], message)
