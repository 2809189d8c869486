"""argparse types shared by the command lines: a bad value is one `error:` line and exit 2."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from common.endpoint import parse_endpoint

T = TypeVar("T")


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
