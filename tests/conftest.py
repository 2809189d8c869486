from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.processes import Processes
from tests.rtsp_harness import RtspServer

# What `make test-all` (CI) runs on its first Python only: long tests that check no
# version-dependent code beyond what the rest of the suite runs on every version (a browser, a
# virtual screen, minutes of hosts in network namespaces). Selected out on the other versions
# with -m "not one_python", so that four runs of the suite fit CI's 90 minutes.
ONE_PYTHON = {
    "tests/test_web.py::test_page_shows_every_camera_live_in_chromium": "a browser",
    "tests/test_web.py::test_a_camera_without_frames_shows_why_and_does_not_keep_the_page_loading": "a browser",
    "tests/test_unreachable_node.py::test_web_shows_the_node_on_its_page_and_in_its_status": "a browser",
    "tests/test_display.py::test_mosaic_shows_each_camera_live_marks_a_stale_one_and_quits_on_q": "a virtual screen",
    "tests/test_multihost.py::": "hosts in network namespaces, outages of 30 s",
    "tests/test_hostile_peers.py::test_a_flood_of_describe_replies_starves_no_camera": "a 30 s flood per command",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for prefix, why in ONE_PYTHON.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.one_python(why))


@pytest.fixture
def nodes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.cleanup()


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
