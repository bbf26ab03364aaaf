"""``course-ws``: run the course's servers, check exercises, and check the machine.

    course-ws list                    the server catalogue
    course-ws serve echo --port 0     run a server until Ctrl+C
    course-ws check shout             check an exercise
    course-ws bench mask --quick      measure something (mask, transports, fanout, memory)
    course-ws doctor                  is everything installed?

A bad argument gets one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from course_ws.bench import BENCHMARKS
from course_ws.hosting.catalogue import CATALOGUE, CatalogueEntry, lookup
from course_ws.hosting.flags import add_option_flags, options_from_args
from course_ws.hosting.listening import BindError, bind_listener, socket_address, url_host
from course_ws.hosting.logs import LOG_FORMAT
from course_ws.options import ServeOptions

USAGE_ERROR = 2
SERVE_DEFAULTS = ServeOptions(port=8000, log_level="info")
"""What ``course-ws serve`` uses for a flag left out: ServeOptions' own defaults but two.

Those defaults suit the runner and the tests (any free port, warnings only); at a
shell, a port to remember and the server's info lines are friendlier.
"""


def usage_line(prog: str, message: str) -> str:
    """The one line a usage error prints: ``course-ws serve: error: ... (see ... --help)``."""
    return f"{prog}: error: {message} (see {prog} --help)\n"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``course-ws serve: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, usage_line(self.prog, message))


def server_name(text: str) -> str:
    """A name from the catalogue."""
    if text not in CATALOGUE:
        raise argparse.ArgumentTypeError(
            f"unknown server {text!r}; choose from {', '.join(CATALOGUE)}"
        )
    return text


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="course-ws", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    commands.add_parser("list", help="list the server catalogue")

    serve = commands.add_parser("serve", help="run a catalogue server until Ctrl+C")
    serve.add_argument("name", type=server_name, help="a server from `course-ws list`")
    add_option_flags(serve, SERVE_DEFAULTS)

    check = commands.add_parser("check", help="check an exercise")
    check.add_argument("exercise", help="the exercise's name, e.g. shout")
    check.add_argument("--solutions", action="store_true", help="check the model solution")

    commands.add_parser("doctor", help="check Python, packages and the programs chapters need")

    bench = commands.add_parser("bench", help="run a benchmark and print its report")
    bench.add_argument("benchmark", choices=BENCHMARKS, help="; ".join(BENCHMARKS.values()))
    bench.add_argument("--quick", action="store_true", help="seconds instead of a full run")
    return parser


def describe(entry: CatalogueEntry, host: str, port: int) -> str:
    """The lines ``serve`` prints: what runs, and the URL of every endpoint."""
    base = f"{url_host(host)}:{port}"
    lines = [f"{entry.name} ({entry.stack}) listening on {base}"]
    for endpoint in entry.endpoints:
        method, _, path = endpoint.rpartition(" ")
        if method == "GET":
            lines.append(f"  http://{base}{path}")
        elif method:
            lines.append(f"  {method} http://{base}{path}")
        else:
            lines.append(f"  ws://{base}{path}")
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)


async def serve_until_signalled(entry: CatalogueEntry, options: ServeOptions) -> None:
    """Run a server until SIGINT or SIGTERM, then close every client with 1001."""
    sock = bind_listener(options.host, options.port)
    running = await entry.load()(options, sock)
    print(describe(entry, *socket_address(sock)), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logging.getLogger("course_ws").info("shutting down: closing every client with 1001")
    await running.aclose()


def run_serve(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ValueError as exc:  # a value each flag accepts, in a combination ServeOptions refuses
        print(usage_line("course-ws serve", str(exc)), end="", file=sys.stderr)
        return USAGE_ERROR
    logging.basicConfig(level=options.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    from course_ws.chat.brokers import BrokerUnavailable

    try:
        asyncio.run(serve_until_signalled(lookup(args.name), options))
    except BindError as exc:
        print(f"course-ws serve: error: {exc.strerror}", file=sys.stderr)
        return 1
    except BrokerUnavailable as exc:  # Redis down at start: not a bad argument, so status 1
        print(f"course-ws serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_list() -> int:
    width = max(len(name) for name in CATALOGUE)
    stack = max(len(entry.stack) for entry in CATALOGUE.values())
    for entry in CATALOGUE.values():
        print(f"{entry.name:<{width}}  {entry.stack:<{stack}}  {entry.summary}")
        print(f"{'':<{width}}  {'':<{stack}}  endpoints: {', '.join(entry.endpoints)}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from course_ws.tooling.checks import check
    from course_ws.tooling.exercises import UnknownExerciseError

    try:  # each check's line is printed as it finishes; then the verdict
        report = check(args.exercise, solutions=args.solutions)
    except (UnknownExerciseError, FileNotFoundError) as exc:
        print(f"course-ws check: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(f"{report.exercise}: {report.verdict}")
    return 0 if report.passed else 1


def run_bench(args: argparse.Namespace) -> int:
    from course_ws.bench import run_benchmark

    print(run_benchmark(args.benchmark, quick=args.quick))
    return 0


def run_doctor() -> int:
    from course_ws.tooling.doctor import diagnose

    report = diagnose()
    print(report)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``course-ws`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "list":
        return run_list()
    if args.command == "check":
        return run_check(args)
    if args.command == "bench":
        return run_bench(args)
    return run_doctor()


if __name__ == "__main__":
    sys.exit(main())
