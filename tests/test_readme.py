"""The README's first screen, run as written: its `capture-node` command against a real RTSP
server, then its `RemoteCapture` loop and its `worker-node describe` line reading that node. Only what cannot be the same here is
replaced: the camera's URL (the test server's), the describe endpoint (a free port instead of
5555, which another node may hold) and the loop's `...` (print the frame, stop)."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable

from tests.support.processes import ROOT, Processes
from tests.support.rtsp_harness import RtspServer

README = (ROOT / "README.md").read_text(encoding="utf-8")
README_NODE = "tcp://127.0.0.1:5555"


def capture_command() -> list[str]:
    """The README's `capture-node --source rtsp://…` line, as argv."""
    (line,) = re.findall(r"^capture-node --source rtsp://.*$", README, re.M)
    return shlex.split(line.split("#")[0])


def remote_capture_block() -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README, re.S)
    (block,) = [b for b in blocks if "RemoteCapture(" in b]
    return block


def test_the_first_screen_runs_as_written(nodes: Processes, rtsp: Callable[..., RtspServer]) -> None:
    server = rtsp("--width", "640", "--height", "360")
    argv = capture_command()
    assert argv[:2] == ["capture-node", "--source"] and f"describe endpoint `{README_NODE}`" in README
    argv[2] = server.url
    _, control = nodes.capture(*argv[1:])

    block = remote_capture_block()
    assert f'RemoteCapture("{README_NODE}", camera="door")' in block and "\n    ...\n" in block, block
    script = block.replace(README_NODE, control).replace(
        "\n    ...\n", '\n    print("frame", frame.shape, cap.last.camera, flush=True)\n    break\n'
    )
    reader = nodes.start_argv([sys.executable, "-c", script])
    reader.wait_for(r"^frame \(360, 640, 3\) door$", 30)
    assert reader.wait_exit(10) == 0
    assert "Traceback" not in reader.output

    (describe,) = re.findall(rf"^worker-node describe --node {README_NODE}\b.*$", README, re.M)
    listing = nodes.worker(*shlex.split(describe.split("#")[0].replace(README_NODE, control))[1:])
    assert listing.wait_exit(15) == 0
    assert re.search(r"door\s+streaming\s+640x360", listing.output), listing.output
