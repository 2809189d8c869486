"""argparse for every command line: a bad value is one `error:` line and exit 2, and that line
is redacted, because it echoes what was typed and a mistyped command line often holds a camera
URL with its password (`capture-node rtsp://admin:pw@cam/x`, `--source` forgotten, gave
`unrecognized arguments: rtsp://admin:pw@cam/x`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from framebus.common.endpoint import parse_endpoint
from framebus.common.redact import redact

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, redact(f"{self.prog}: error: {message}\n"))


def arg_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Adapt a ValueError-raising parser to argparse's error reporting."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def endpoint_arg(bind: bool = False) -> Callable[[str], str]:
    """An endpoint option, checked by common.endpoint and kept as its canonical text."""

    def endpoint(text: str) -> str:
        return str(parse_endpoint(text, bind=bind))

    return arg_type(endpoint)
