"""What `-h` shows: every command, subcommand and option of the three CLIs says what it is
for; and describe's clock line reads as a person would say it."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from framebus.capture_node.cli import build_parser as capture_parser
from framebus.common.keys_cli import build_parser as keys_parser
from framebus.worker_node.cli import build_parser as worker_parser
from framebus.worker_node.describe import clock_line
from framebus.worker_node.discovery import ClockOffset


def undocumented(parser: argparse.ArgumentParser, name: str) -> list[str]:
    """'<command> [subcommand] <option>' for each thing -h would show without a word on it."""
    missing = [] if parser.description else [f"{name}: no description"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            for sub_name, sub in action.choices.items():
                if sub_name not in helped:
                    missing.append(f"{name} {sub_name}: no help in the command list")
                missing += undocumented(sub, f"{name} {sub_name}")
        elif action.help is None:
            missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: no help")
    return missing


@pytest.mark.parametrize(
    ("name", "build"),
    [("capture-node", capture_parser), ("worker-node", worker_parser), ("framebus-keys", keys_parser)],
)
def test_every_command_and_option_has_help(name: str, build: object) -> None:
    assert undocumented(build(), name) == []  # type: ignore[operator]


def test_worker_node_describe_help_for_real() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker_node", "describe", "-h"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "Ask a node once for its cameras" in text
    assert "--node ENDPOINT the node's describe endpoint, e.g. tcp://edge1:5555" in text
    assert "--timeout T how long to wait for the answer (default 3s)" in text


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-0.0073, "  clock: the node is 7.3 ms behind this host (± 0.4 ms)"),
        (0.0073, "  clock: the node is 7.3 ms ahead of this host (± 0.4 ms)"),
        (0.0, "  clock: the node is 0.0 ms ahead of this host (± 0.4 ms)"),
    ],
)
def test_clock_line_says_behind_rather_than_negative_ahead(seconds: float, expected: str) -> None:
    assert clock_line(ClockOffset(seconds, 0.0004)) == expected
