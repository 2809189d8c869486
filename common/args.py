"""argparse with its error messages redacted: they echo what was typed, and a mistyped command
line often holds a camera URL with its password (`capture-node rtsp://admin:pw@cam/x`, the
`--source` forgotten, gave `unrecognized arguments: rtsp://admin:pw@cam/x`)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from common.redact import redact


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, redact(f"{self.prog}: error: {message}\n"))
