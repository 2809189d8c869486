"""framebus, the package user code imports: the names it promises, and that importing it costs
the nodes nothing (a camera process imports its modules through it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import framebus
from tests.support.processes import ROOT


def test_it_gives_the_names_user_code_needs() -> None:
    from framebus import Frame, FrameHeader, RemoteCapture, processing
    from framebus.common import protocol
    from framebus.worker_node import process as worker_process
    from framebus.worker_node.remote_capture import RemoteCapture as Inner

    assert (Frame, FrameHeader, RemoteCapture) == (protocol.Frame, protocol.FrameHeader, Inner)
    assert processing.run is worker_process.run
    assert sorted(framebus.__all__) == ["Frame", "FrameHeader", "RemoteCapture", "processing"]
    assert set(framebus.__all__) <= set(dir(framebus))


def test_a_name_it_does_not_have_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'framebus' has no attribute 'RemoteCaptur'"):
        framebus.RemoteCaptur  # noqa: B018 - the lookup is the test


def test_importing_it_loads_nothing_else() -> None:
    """The names load on first use: a capture node importing framebus.capture_node does not
    load the worker's modules or OpenCV for them."""
    probe = "import sys, framebus; print(sorted(m for m in sys.modules if m.startswith(('framebus.', 'cv2'))))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
