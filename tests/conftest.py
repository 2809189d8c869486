from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from tests.support.processes import Processes
from tests.support.rtsp_harness import RtspServer

# `make test` runs the tests three at a time (pytest-xdist), then these alone: beside other tests
# their frame-rate bounds would measure the machine's load. `make test-all` (CI) runs them on one
# Python only: a browser's frame rate and a virtual screen's windows do not depend on the Python
# that drives them. A test opts in with `@pytest.mark.browser` (Chromium through Playwright) or
# `@pytest.mark.display` (Xvfb).


# A run started as a background job (`cmd &` in a script, nohup) inherits SIGINT ignored, and so
# would every node the tests start: the Ctrl-C tests would then see nodes that rightly keep an
# ignored signal ignored. The nodes are started as from a terminal, where SIGINT stops them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
