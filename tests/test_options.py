"""ServeOptions on the command line: every field a flag, every flag a field, no server started.

The tests iterate ``dataclasses.fields(ServeOptions)``, so a field added to the
dataclass is covered without touching this file.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import pytest

from course_ws import cli, serve_in_background
from course_ws.cli import SERVE_DEFAULTS, build_parser, main
from course_ws.hosting.flags import (
    OptionFlag,
    add_option_flags,
    field_docs,
    format_duration,
    format_size,
    option_flags,
    options_from_args,
    parse_duration,
    parse_size,
)
from course_ws.options import LOG_LEVELS, Bytes, Seconds, ServeOptions

FIELDS = [field.name for field in fields(ServeOptions)]


def flag_for(name: str) -> OptionFlag:
    return next(option for option in option_flags() if option.name == name)


def fields_whose_flag(test: Callable[[OptionFlag], bool]) -> list[str]:
    """Parameters: the fields whose flag passes ``test``, or every field if the flags cannot
    be built (a missing docstring), so that each test fails and says why."""
    try:
        return [option.name for option in option_flags() if test(option)]
    except TypeError:
        return FIELDS


def squeezed(text: str) -> str:
    """Text without whitespace: argparse wraps help lines wherever it likes."""
    return "".join(text.split())


@pytest.fixture(autouse=True)
def no_server(monkeypatch):
    """Nothing here may start a server: a test that gets that far fails."""

    async def refuse(entry, options):
        raise AssertionError(f"a server would start with {options}")

    monkeypatch.setattr(cli, "serve_until_signalled", refuse)


def serve(capsys, *argv: str) -> tuple[int | str | None, str]:
    """``course-ws serve chat ARGV`` in process: its exit status and stderr."""
    try:
        status: int | str | None = main(["serve", "chat", *argv])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    assert out == ""
    return status, err


# -- declared once, in the dataclass --------------------------------------------


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_has_a_docstring(name):
    assert field_docs(ServeOptions).get(name), f"ServeOptions.{name} needs a docstring"


@dataclass(frozen=True)
class Undocumented:
    documented: int = 1
    """Has its line."""
    forgotten: int = 2


def test_a_field_without_a_docstring_is_refused():
    assert dict(field_docs(Undocumented)) == {"documented": "Has its line."}
    with pytest.raises(TypeError, match=r"Undocumented\.forgotten has no docstring.*--forgotten"):
        option_flags(Undocumented)


def test_docstrings_are_read_once():
    assert field_docs(ServeOptions) is field_docs(ServeOptions)


@dataclass(frozen=True)
class Unreadable:
    table: dict[str, int]
    """No flag reads this."""


def test_a_type_no_flag_can_read_is_refused():
    with pytest.raises(TypeError, match=r"Unreadable\.table: no command-line flag"):
        option_flags(Unreadable)


# -- units ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("65536", 65536),
        ("64KiB", 65536),
        ("64 kib", 65536),
        ("1MiB", 2**20),
        ("1MB", 10**6),
        ("1kB", 1000),
        ("2GiB", 2**31),
        ("1.5KiB", 1536),
        ("7B", 7),
        ("0", 0),
    ],
)
def test_sizes_are_read(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "lots", "-1", "1.5", "1.0001KB", "KiB", "1e6", "0x10", "1 2", "64 KiBs", "1TiB"]
)
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError, match="is not a"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20s", 20.0),
        ("20", 20.0),
        ("1.5", 1.5),
        (".25s", 0.25),
        ("500ms", 0.5),
        ("1500ms", 1.5),
        ("2m", 120.0),
        ("2min", 120.0),
        ("1h", 3600.0),
        (" 20 S ", 20.0),
        ("0", 0.0),
    ],
)
def test_durations_are_read(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "soon", "-3s", "-1", "3 days", "1e3", "nan", "inf", "s", "1.2.3", "9" * 400]
)
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match=r"is not a duration|too long"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [(2**20, "1MiB"), (65536, "64KiB"), (10**6, "1MB"), (1000, "1kB"), (1536, "1536"), (1, "1")],
)
def test_sizes_are_shown_exactly(size, text):
    assert format_size(size) == text
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("seconds", "text"), [(20.0, "20s"), (0.5, "500ms"), (1.5, "1.5s"), (0.0, "0s"), (90, "90s")]
)
def test_durations_are_shown_exactly(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["off", "none", "OFF", " None "])
def test_optional_fields_read_off_as_none(text):
    assert flag_for("ping_interval").parse(text) is None


def test_off_is_refused_where_none_is_not_allowed():
    required = next(
        option for option in option_flags() if option.metavar == "DURATION" and not option.optional
    )
    with pytest.raises(argparse.ArgumentTypeError, match=r"'off' is not a duration"):
        required.parse("off")


def test_units_are_declared_in_the_dataclass():
    assert flag_for("max_size").metavar == "SIZE"
    assert flag_for("ping_interval").metavar == "DURATION|off"
    assert flag_for("log_level").metavar == "{" + ",".join(LOG_LEVELS) + "}"


# -- every field a flag, and back -------------------------------------------------


def test_serve_help_lists_every_field_with_its_help_and_default(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["serve", "chat", "--help"])
    assert exited.value.code == 0
    shown = squeezed(capsys.readouterr().out)
    for field in fields(ServeOptions):
        option = flag_for(field.name)
        default = option.show(getattr(SERVE_DEFAULTS, field.name))
        repeatable = "repeatable; " if option.repeatable else ""
        expected = f"{option.flag} {option.metavar} {option.help} ({repeatable}default: {default})"
        assert squeezed(expected.replace("%%", "%")) in shown, field.name
    for default in ("(default: 8000)", "(default: info)", "(default: 1MiB)", "(default: 20s)"):
        assert squeezed(default) in shown


def test_the_cli_defaults_override_only_port_and_log_level():
    args = build_parser().parse_args(["serve", "chat"])
    assert options_from_args(args) == SERVE_DEFAULTS
    assert replace(ServeOptions(), port=8000, log_level="info") == SERVE_DEFAULTS


@pytest.mark.parametrize("name", FIELDS)
def test_every_default_is_shown_as_the_flag_reads_it(name):
    option = flag_for(name)
    for options in (ServeOptions(), SERVE_DEFAULTS):
        default = getattr(options, name)
        if option.repeatable:
            assert all(option.parse(option.reader.show(item)) == item for item in default)
        else:
            assert option.parse(option.show(default)) == default


def another_value(option: OptionFlag, default: Any) -> Any:
    """A value other than ``default`` that this field accepts."""
    kind = option.metavar if option.metavar == "on|off" else option.metavar.removesuffix("|off")
    if option.repeatable:
        return ("one.example", "two.example")
    if kind == "SIZE":
        return 2 * (default or 2048)
    if kind == "DURATION":
        return (default or 1) + 1.5
    if kind == "N":
        return (default or 0) + 1
    if kind == "NUMBER":
        return (default or 1) * 2 + 0.5
    if kind == "on|off":
        return not default
    if kind.startswith("{"):
        return next(choice for choice in kind.strip("{}").split(",") if choice != default)
    return f"{default or 'example'}.example"


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("form", ["--flag value", "--flag=value"])
def test_every_field_can_be_set_from_the_command_line(name, form):
    option = flag_for(name)
    value = another_value(option, getattr(SERVE_DEFAULTS, name))
    argv = []
    for item in value if option.repeatable else [value]:
        text = option.reader.show(item) if option.repeatable else option.show(item)
        argv += [option.flag, text] if form == "--flag value" else [f"{option.flag}={text}"]
    options = options_from_args(build_parser().parse_args(["serve", "chat", *argv]))
    assert getattr(options, name) == value
    assert replace(options, **{name: getattr(SERVE_DEFAULTS, name)}) == SERVE_DEFAULTS


@pytest.mark.parametrize("name", fields_whose_flag(lambda option: option.optional))
def test_every_optional_field_can_be_turned_off(name):
    args = build_parser().parse_args(["serve", "chat", flag_for(name).flag, "off"])
    assert getattr(options_from_args(args), name) is None


# -- bad values: one line, status 2 ----------------------------------------------


@pytest.mark.parametrize("name", fields_whose_flag(lambda option: option.reader.parse is not str))
def test_a_value_no_flag_reads_is_one_line_and_status_2(capsys, name):
    flag = flag_for(name).flag
    status, err = serve(capsys, flag, "bogus")
    assert status == 2
    assert err.startswith(f"course-ws serve: error: argument {flag}: ")
    assert "'bogus'" in err
    assert err.endswith("(see course-ws serve --help)\n")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ping-interval=-3s"], "argument --ping-interval: '-3s' is not a duration (examples: "),
        (["--ping-interval", "soon"], "(examples: 20s, 500ms, 1.5, 2m, off)"),
        (["--max-size", "1.5"], "argument --max-size: '1.5' is not a whole number of bytes"),
        (["--port", "x"], "argument --port: 'x' is not a whole number"),
        (["--message-rate", "nan"], "argument --message-rate: 'nan' is not a number"),
        (["--log-level", "loud"], "argument --log-level: invalid choice: 'loud' (choose from "),
        # accepted by each flag, refused by ServeOptions.__post_init__:
        (["--port", "70000"], "error: --port must be 0..65535, got 70000"),
        (["--max-size", "0"], "error: --max-size must be at least 1 byte, got 0"),
        (["--ping-timeout", "0s"], "error: --ping-timeout must be positive or off, got 0.0"),
        (["--message-burst", "0"], "--message-rate must be positive and --message-burst at least"),
        (["--history-size", "0"], "error: --history-size must be at least 1, got 0"),
        (["--presence-limit", "-1"], "error: --presence-limit must be 0 or more, got -1"),
    ],
)
def test_bad_values_are_one_line_and_status_2(capsys, argv, message):
    status, err = serve(capsys, *argv)
    assert status == 2
    assert message in err
    assert err.startswith("course-ws serve: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("name", FIELDS)
def test_what_serve_options_refuses_is_told_in_flag_words(name):
    """Whatever __post_init__ says about a field reaches the user as a flag, not a field name."""
    args = build_parser().parse_args(["serve", "chat"])
    refusals = []
    for bad in (-1, 0, math.nan):
        setattr(args, name, bad)
        try:
            options_from_args(args)
        except ValueError as refused:
            refusals.append(str(refused))
    for message in refusals:
        assert flag_for(name).flag in message
        assert not re.search(rf"(?<![\w-]){name}(?![\w-])", message)


# -- a dataclass with every kind of field --------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Gadget:
    """Every kind of field a flag can read."""

    size: Bytes = 4096
    """How big."""
    wait: Seconds | None = None
    """How long; 100% optional."""
    mode: Literal["fast", "slow"] = "fast"
    """Which way."""
    verbose: bool = False
    """Whether to talk."""
    origin: tuple[str, ...] = ("https://a.example",)
    """An origin to allow."""
    home: Path = Path("/tmp")
    """Where to live."""


def test_every_kind_of_field_becomes_a_flag():
    parser = argparse.ArgumentParser()
    add_option_flags(parser, Gadget())
    assert vars(parser.parse_args([])) == vars(Gadget())
    given = parser.parse_args(
        [
            *("--size=8KiB", "--wait=250ms", "--mode=slow", "--verbose=on", "--home=/srv"),
            *("--origin", "https://b.example", "--origin", "https://c.example"),
        ]
    )
    assert Gadget(**vars(given)) == Gadget(
        size=8192,
        wait=0.25,
        mode="slow",
        verbose=True,
        origin=("https://b.example", "https://c.example"),
        home=Path("/srv"),
    )
    shown = squeezed(parser.format_help())
    assert squeezed("How long; 100% optional. (default: off)") in shown
    assert squeezed("(repeatable; default: https://a.example)") in shown
    assert squeezed("--verbose on|off") in shown


# -- the runner's keywords are the same fields ----------------------------------------


def test_an_unknown_runner_keyword_lists_every_field():
    with pytest.raises(TypeError, match="unknown option 'colour'") as refused:
        serve_in_background("echo", colour="blue")
    for name in FIELDS:
        assert name in str(refused.value)
