"""SIGHUP reloads with real processes: a camera that did not change keeps its endpoint, its
camera process and its stream (no restart, no gap), wherever it now sits in the file."""

from __future__ import annotations

import random
import re
import signal
import socket
from pathlib import Path

import zmq

from framebus.worker_node.discovery import describe
from tests.support.processes import Processes, wait_until
from tests.test_end_to_end import saved_files

CAMERA = '[[camera]]\nid = "{}"\nwidth = 160\nheight = 120\nfps = 10\n'


def free_base_port(cameras: int) -> int:
    """A control port P such that P, the default frame ports after it and their pull ports
    (+1000) are free now. Below the ephemeral range, so that no outgoing connection takes one."""
    for _ in range(100):
        base = random.randrange(20000, 28000)
        wanted = [base] + [base + 1 + i + offset for i in range(cameras) for offset in (0, 1000)]
        held = []
        try:
            for port in wanted:
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no free run of ports")


def listener_pid(port: int) -> int:
    """The process holding the listening TCP socket on `port` (the camera process of a frame port)."""
    inode = ""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == "0A":  # 0A: LISTEN
            inode = fields[9]
    assert inode, f"nothing listens on port {port}"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(fd.readlink() == Path(f"socket:[{inode}]") for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no process holds the listener of port {port}")


def endpoints(control: str) -> dict[str, str]:
    with zmq.Context() as ctx:
        return {c.camera: c.endpoint for c in describe(ctx, control, 5.0).cameras}


def port_of(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def test_removing_the_first_camera_moves_and_restarts_none_of_the_others(nodes: Processes, tmp_path: Path) -> None:
    base = free_base_port(4)
    header = f'[node]\ncontrol = "tcp://127.0.0.1:{base}"\n'
    config = tmp_path / "node.toml"
    config.write_text(header + "".join(CAMERA.format(c) for c in ("a", "b", "c")))
    capture, control = nodes.capture("--config", str(config), "--control", f"tcp://127.0.0.1:{base}")
    before = endpoints(control)
    assert [port_of(before[c]) for c in "abc"] == [base + 1, base + 2, base + 3]
    pids = {c: listener_pid(port_of(before[c])) for c in "bc"}
    assert len(set(pids.values())) == 2 and capture.proc.pid not in pids.values()

    out = tmp_path / "saved"
    worker = nodes.worker(
        "save", "--node", control, "--camera", "b", "--camera", "c", "--out", str(out), "--every-n", "1"
    )
    wait_until(lambda: all(len(saved_files(out).get(c, [])) >= 10 for c in "bc"), 30, "frames of b and c")

    config.write_text(header + "".join(CAMERA.format(c) for c in ("b", "c")))
    mark = len(capture.lines)
    capture.send(signal.SIGHUP)
    capture.wait_for(r"camera a: stopped", start=mark)
    seen_at_reload = {c: saved_files(out)[c][-1] for c in "bc"}
    wait_until(lambda: all(saved_files(out)[c][-1] >= seen_at_reload[c] + 20 for c in "bc"), 30, "2 s more of b, c")

    after = endpoints(control)
    assert after == {c: before[c] for c in "bc"}
    assert {c: listener_pid(port_of(after[c])) for c in "bc"} == pids
    assert not re.search(r"camera [bc]: (stopped|source)", "\n".join(capture.lines[mark:])), capture.output
    for cam in "bc":
        seqs = saved_files(out)[cam]
        gaps = [b - a for a, b in zip(seqs, seqs[1:], strict=False)]
        assert min(gaps) > 0, f"camera {cam}: its sequence restarted (a new process): {seqs}"
        assert max(gaps) <= 10, f"camera {cam}: a gap of {max(gaps)} frames (1 s at 10 fps) across the reload"

    # A camera added now may not take b's or c's port: it gets the next free one.
    config.write_text(header + "".join(CAMERA.format(c) for c in ("b", "c", "d")))
    capture.send(signal.SIGHUP)
    capture.wait_for(r"camera d: source test, frames on tcp://127.0.0.1:(\d+)")
    wait_until(lambda: "d" in endpoints(control), 15, "camera d described")
    final = endpoints(control)
    assert {c: final[c] for c in "bc"} == {c: before[c] for c in "bc"}
    assert port_of(final["d"]) == base + 4
    assert {c: listener_pid(port_of(final[c])) for c in "bc"} == pids
    worker.stop()
    capture.stop()
    assert "Traceback" not in capture.output + worker.output
