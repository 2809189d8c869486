"""deploy/ stays true: example configs load, systemd units verify, worker arguments parse."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from framebus.capture_node import config
from framebus.capture_node.cli import build_parser as capture_parser
from framebus.common.keys import generate_key_pair
from framebus.worker_node.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
VENV_BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", ["capture-edge1.toml", "compose-node.toml"])
def test_example_node_configs_load(name: str, tmp_path: Path) -> None:
    """Loaded from a copy beside the keys it names, as under /etc/framebus."""
    copy = tmp_path / name
    copy.write_text((DEPLOY / "config" / name).read_text())
    generate_key_pair(tmp_path / "keys", "edge1")
    (tmp_path / "allowed-edge1").mkdir()
    loaded = config.load(copy)
    assert loaded.cameras
    assert loaded.node.key or loaded.node.insecure


@pytest.mark.parametrize("name", ["worker-frames.env", "worker-wan.env"])
def test_example_worker_arguments_parse(name: str) -> None:
    line = next(x for x in (DEPLOY / "config" / name).read_text().splitlines() if x.startswith("WORKER_ARGS="))
    args = build_parser().parse_args([*shlex.split(line.partition("=")[2]), "--key", "unit-adds-this"])
    assert args.command == "save"
    assert args.server_key, "a worker across hosts names the node's public key"


@pytest.mark.parametrize("unit", ["framebus-capture@.service", "framebus-worker@.service"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    """systemd-analyze checks keys, sections and that the commands exist (pointed at this venv)."""
    text = (DEPLOY / "systemd" / unit).read_text().replace("/opt/framebus/venv/bin", str(VENV_BIN))
    instance = tmp_path / unit.replace("@", "@example")
    instance.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 0 and not problems, problems


def exec_start(unit: str, instance: str) -> list[str]:
    """The unit's command line as systemd runs it for an instance (%i, %d filled in)."""
    line = next(x for x in (DEPLOY / "systemd" / unit).read_text().splitlines() if x.startswith("ExecStart="))
    command = line.partition("=")[2].replace("%i", instance).replace("%d", "/run/credentials/unit")
    return shlex.split(command)


def test_capture_unit_command_is_one_the_cli_takes() -> None:
    argv = exec_start("framebus-capture@.service", "edge1")
    assert argv[0] == "/opt/framebus/venv/bin/capture-node"
    args = capture_parser().parse_args(argv[1:])
    assert (args.config, args.key) == (
        Path("/etc/framebus/capture-edge1.toml"),
        "/run/credentials/unit/node.key_secret",
    )


def test_worker_unit_command_is_one_the_cli_takes() -> None:
    """`sh -c 'exec worker-node $WORKER_ARGS --key …'` with an example environment file."""
    shell = exec_start("framebus-worker@.service", "frames")
    assert shell[:2] == ["/bin/sh", "-c"]
    env = next(
        x for x in (DEPLOY / "config" / "worker-frames.env").read_text().splitlines() if x.startswith("WORKER_ARGS=")
    )
    argv = shlex.split(shell[2].replace("$WORKER_ARGS", env.partition("=")[2]))
    assert argv[:2] == ["exec", "/opt/framebus/venv/bin/worker-node"]
    args = build_parser().parse_args(argv[2:])
    assert args.command == "save" and args.key == Path("/run/credentials/unit/worker.key_secret")
