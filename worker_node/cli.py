"""`worker-node`: subscribe to capture nodes and do something with the frames.

Each command lives in its own module, which adds its flags and runs it (`add_arguments`,
`main`); this file only puts them together and does what every command needs first."""

from __future__ import annotations

import argparse
import logging
import sys

from framebus.common import threads
from framebus.common.bind_error import bind_error
from framebus.common.cli_args import ArgumentParser
from framebus.common.keys import KeyFileError
from framebus.common.logs import setup_logging
from framebus.common.metrics import serve_metrics
from framebus.worker_node import describe, display, flags, process, relay, save, top, web

log = logging.getLogger("worker_node")

COMMANDS = (save, display, web, process, top, describe, relay)  # in the order `--help` lists them


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="worker-node", description="Subscribe to framebus capture nodes.")
    flags.add_global_options(p, log_default="INFO", metrics_default=None)
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        parser = command.add_arguments(sub)
        # `worker-node save --log-level DEBUG …` works too
        flags.add_global_options(parser, log_default=argparse.SUPPRESS, metrics_default=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    threads.install()
    try:
        code = run(args)
    except Exception as exc:  # a bug: one line that says so, the traceback at DEBUG
        log.error(
            "stopped by an internal error: %s: %s (a bug: please report it; --log-level DEBUG shows the traceback)",
            type(exc).__name__,
            str(exc)[:300],
        )
        log.debug("traceback", exc_info=exc)
        return 1
    return 1 if threads.failure() else code  # a thread died, and said why


def run(args: argparse.Namespace) -> int:
    try:
        serve_metrics(args.metrics_port)
    except OSError as exc:
        log.error("--metrics-port: %s", bind_error(str(args.metrics_port), exc))
        return 2
    try:
        code: int = args.func(args)
    except KeyFileError as exc:
        log.error("%s", exc)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
