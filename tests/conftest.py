from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from tests.support.processes import Processes
from tests.support.rtsp_harness import RtspServer

# What `make test-all` (CI) runs on every supported Python; the rest of the suite runs on the
# one `make test` runs on (the whole suite, 28 min on a 2-core machine: four of those do not
# fit CI's 90 minutes). On the other versions, -m "not one_python" keeps the tests of the code
# whose behaviour could differ between versions (parsing, the wire protocol, config, enums,
# sockets and threads in one process, signals at start-up), with real node processes in
# test_early_signals, test_cli_help and the protocol spec's own subscriber (test_protocol_vectors).
EVERY_PYTHON = (
    "tests/test_camera.py", "tests/test_cli_help.py", "tests/test_config.py",
    "tests/test_config_reference.py", "tests/test_early_signals.py", "tests/test_endpoint.py",
    "tests/test_fields.py", "tests/test_follow.py", "tests/test_frame_slot.py",
    "tests/test_fuzz_decode.py", "tests/test_handlers.py", "tests/test_jpeg.py", "tests/test_keys.py",
    "tests/test_latest.py", "tests/test_listener.py", "tests/test_mosaic.py",
    "tests/test_msgpack_shape.py", "tests/test_node_control.py", "tests/test_process.py",
    "tests/test_protocol.py", "tests/test_protocol_vectors.py", "tests/test_redact.py",
    "tests/test_republish.py", "tests/test_save.py", "tests/test_stats.py", "tests/test_stream.py",
    "tests/test_units.py", "tests/test_web_feed.py",
)  # fmt: skip


# A run started as a background job (`cmd &` in a script, nohup) inherits SIGINT ignored, and so
# would every node the tests start: the Ctrl-C tests would then see nodes that rightly keep an
# ignored signal ignored. The nodes are started as from a terminal, where SIGINT stops them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.nodeid.startswith(EVERY_PYTHON):
            item.add_marker(pytest.mark.one_python)


@pytest.fixture
def nodes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.cleanup()


@pytest.fixture
def bound() -> Iterator[Callable[[int], tuple[zmq.Socket, str]]]:
    """`bound(zmq.PUB)`: a socket of that type on a free loopback port, and its endpoint; all
    closed after the test. The node's end of a test that plays the node."""
    ctx = zmq.Context()

    def bind(kind: int) -> tuple[zmq.Socket, str]:
        sock = ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        return sock, f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}"

    try:
        yield bind
    finally:
        ctx.destroy(0)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small real file systems (for a real ENOSPC). Needs root, which CI has: a failure
    to mount fails the test rather than skipping it."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        target = tmp_path / f"tmpfs{len(mounted)}"
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], check=True)
        mounted.append(target)
        return target

    try:
        yield mount
    finally:
        for target in mounted:
            subprocess.run(["umount", str(target)], check=True)


@pytest.fixture
def rtsp() -> Iterator[Callable[..., RtspServer]]:
    """Start real RTSP servers: rtsp("--source", "clock", "--width", "1280", ...)."""
    servers: list[RtspServer] = []

    def start(*args: str) -> RtspServer:
        server = RtspServer(*args)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()
