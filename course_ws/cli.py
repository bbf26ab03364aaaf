"""``course-ws``: run the course's servers, check exercises, and check the machine.

    course-ws list                    the server catalogue
    course-ws serve echo --port 0     run a server until Ctrl+C
    course-ws deploy local chat       Redis, 2 workers and nginx in front, until Ctrl+C
    course-ws check shout             check an exercise
    course-ws bench mask --quick      measure something (mask, transports, fanout, memory)
    course-ws load ws://127.0.0.1:8000 --clients 1000 --rate 200   load-test a chat server
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
from pathlib import Path
from typing import NoReturn

from course_ws.bench import BENCHMARKS
from course_ws.hosting.catalogue import CATALOGUE, CatalogueEntry, lookup
from course_ws.hosting.flags import (
    add_option_flags,
    in_flag_words,
    options_from_args,
    parse_duration,
)
from course_ws.hosting.listening import BindError, bind_listener, socket_address, url_host
from course_ws.hosting.logs import LOG_FORMAT
from course_ws.load import plan as load_plan
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

    deploy = commands.add_parser(
        "deploy", help="run Redis, N workers and nginx on free loopback ports until Ctrl+C"
    )
    deploy.add_argument("where", choices=["local"], help="local: this machine, loopback only")
    deploy.add_argument("name", type=server_name, help="a server from `course-ws list`")
    deploy.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    deploy.add_argument("--port", type=int, default=0, help="nginx's port (default: 0, a free one)")

    check = commands.add_parser("check", help="check an exercise")
    check.add_argument("exercise", help="the exercise's name, e.g. shout")
    check.add_argument("--solutions", action="store_true", help="check the model solution")

    commands.add_parser("doctor", help="check Python, packages and the programs chapters need")

    bench = commands.add_parser("bench", help="run a benchmark and print its report")
    bench.add_argument("benchmark", choices=BENCHMARKS, help="; ".join(BENCHMARKS.values()))
    bench.add_argument("--quick", action="store_true", help="seconds instead of a full run")
    add_load_parser(commands)
    return parser


def process_id(text: str) -> int:
    """The id of a running process."""
    if not text.isdigit() or not Path(f"/proc/{text}").is_dir():
        raise argparse.ArgumentTypeError(f"no running process with id {text!r}")
    return int(text)


def add_load_parser(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    """``course-ws load``: its arguments, each bounded by :mod:`course_ws.load.plan`."""
    load = commands.add_parser(
        "load",
        help="load-test a chat server on this machine",
        description="Open chat clients from several processes and loopback addresses, have "
        "them talk, and report connect times, delivery latency, messages lost or duplicated "
        "(by id), close codes and the server's memory per connection. Loopback only. "
        "Exit status 1 if a message was lost or duplicated.",
    )
    load.add_argument("url", help="the server's base URL: ws://127.0.0.1:PORT (loopback only)")
    load.add_argument(
        "--clients", type=int, default=100, help=f"chat members, 1-{load_plan.MAX_CLIENTS:,}"
    )
    load.add_argument("--rooms", type=int, default=10, help="rooms the members spread over")
    load.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help=f"messages per second, all senders together (at most {load_plan.MAX_RATE:g})",
    )
    load.add_argument(
        "--duration",
        type=parse_duration,
        default=5.0,
        help=f"how long to send: 10, 10s, 500ms (at most {load_plan.MAX_DURATION:g} s)",
    )
    load.add_argument(
        "--processes",
        type=int,
        default=2,
        help=f"client processes (at most {load_plan.MAX_PROCESSES})",
    )
    load.add_argument(
        "--addresses",
        type=int,
        help=f"source addresses 127.0.0.2, ... (default: one per "
        f"{load_plan.CLIENTS_PER_ADDRESS} clients, at least 2; at most "
        f"{load_plan.MAX_SOURCE_ADDRESSES})",
    )
    load.add_argument(
        "--connect-timeout",
        type=parse_duration,
        default=60.0,
        help=f"deadline for opening every client (at most {load_plan.MAX_CONNECT_TIMEOUT:g} s)",
    )
    load.add_argument(
        "--server-pid",
        type=process_id,
        action="append",
        default=[],
        help="the server's process id, for its memory per connection (its workers are "
        "counted with it; repeat for several servers)",
    )
    load.add_argument("--json", metavar="FILE", type=Path, help="also write the figures as JSON")
    load.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def describe(entry: CatalogueEntry, host: str, port: int, workers: int = 1) -> str:
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
    if workers > 1:
        lines.append(f"{workers} worker processes; SIGHUP restarts them one at a time.")
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)


async def serve_until_signalled(entry: CatalogueEntry, options: ServeOptions) -> None:
    """Run a server until SIGINT or SIGTERM, then close every client with 1001."""
    sock = bind_listener(options.host, options.port)
    running = await entry.load()(options, sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Only now: whoever reads this line may send SIGTERM at once, and must get a 1001.
    print(describe(entry, *socket_address(sock)), flush=True)
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
    from course_ws.hosting.open_files import raise_for_serving

    raise_for_serving()  # one open file per connection; the workers inherit the limit

    if options.workers > 1:
        return run_serve_workers(lookup(args.name), options)
    try:
        asyncio.run(serve_until_signalled(lookup(args.name), options))
    except BindError as exc:
        print(f"course-ws serve: error: {exc.strerror}", file=sys.stderr)
        return 1
    except BrokerUnavailable as exc:  # Redis down at start: not a bad argument, so status 1
        print(f"course-ws serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_serve_workers(entry: CatalogueEntry, options: ServeOptions) -> int:
    """``serve --workers N``: a supervisor of N worker processes sharing one port."""
    from course_ws.hosting.workers import WorkerFailed, WorkerPool

    def ready(pool: WorkerPool) -> None:
        print(describe(entry, pool.host, pool.port, options.workers), flush=True)

    try:
        WorkerPool(entry.name, options).run_until_signalled(ready)
    except (BindError, WorkerFailed) as exc:
        print(
            f"course-ws serve: error: {exc.strerror if isinstance(exc, BindError) else exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    """``deploy local NAME``: Redis, N workers and nginx until SIGINT or SIGTERM."""
    logging.basicConfig(level="WARNING", format=LOG_FORMAT, stream=sys.stderr)
    from course_ws.hosting.deploy import deploy_local
    from course_ws.hosting.open_files import raise_for_serving
    from course_ws.hosting.workers import signals_to_flags, wait_for_stop

    try:
        ServeOptions(workers=args.workers, port=args.port)
    except ValueError as exc:
        print(usage_line("course-ws deploy", in_flag_words(str(exc))), end="", file=sys.stderr)
        return USAGE_ERROR
    entry = lookup(args.name)
    raise_for_serving()  # nginx and the workers inherit it
    with signals_to_flags() as flags:
        try:
            with deploy_local(args.name, workers=args.workers, port=args.port) as deployment:
                print(describe(entry, "127.0.0.1", deployment.nginx.port, args.workers), flush=True)
                print(deployment.describe(), flush=True)
                wait_for_stop(flags, deployment.restart_workers)
        except (OSError, RuntimeError) as exc:  # a program missing, a port taken, a worker failing
            print(f"course-ws deploy: error: {exc}", file=sys.stderr)
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


def run_load(args: argparse.Namespace) -> int:
    from course_ws.load import LoadPlan, run_load_test

    try:
        plan = LoadPlan(
            args.url,
            clients=args.clients,
            rooms=args.rooms,
            rate=args.rate,
            duration=args.duration,
            processes=args.processes,
            addresses=args.addresses,
            connect_timeout=args.connect_timeout,
        )
        if args.json is not None and not args.json.parent.is_dir():
            raise ValueError(f"--json: no folder {str(args.json.parent)!r}")
    except ValueError as exc:
        print(usage_line("course-ws load", str(exc)), end="", file=sys.stderr)
        return USAGE_ERROR
    try:
        report = run_load_test(plan, server_pids=args.server_pid, progress=not args.no_progress)
    except (TimeoutError, RuntimeError) as exc:
        print(f"course-ws load: error: {exc}", file=sys.stderr)
        return 1
    print(report)
    if args.json is not None:
        args.json.write_text(report.to_json() + "\n", encoding="utf-8")
    return 1 if report.lost or report.duplicated else 0


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
    if args.command == "deploy":
        return run_deploy(args)
    if args.command == "check":
        return run_check(args)
    if args.command == "bench":
        return run_bench(args)
    if args.command == "load":
        return run_load(args)
    return run_doctor()


if __name__ == "__main__":
    sys.exit(main())
