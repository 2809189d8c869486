"""Where the capture node's CPU goes: py-spy on the real node (all its processes, native frames
included) streaming the bench clip to one fast RemoteCapture consumer.

    .venv/bin/python -m benchmarks.profile_node [--seconds 30] [--out bench-results]

Writes OUT/capture-node-profile.txt (py-spy's collapsed stacks, for flamegraph tools) and prints
the share of samples per thread and per stage (decode, colour conversion, JPEG encode, framing,
ZeroMQ send, ...). py-spy pauses the node for each sample (needed for native frames): shares
are right, absolute CPU is not; take that from `make bench`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchmarks.processes import REPO, CaptureNodeProcess, Helper, agent
from benchmarks.source_clip import make_clip

# First match wins: (stage, any of these substrings in the stack).
STAGES = (
    ("JPEG encode (simplejpeg / libjpeg-turbo)", ("encode_bgr", "simplejpeg", "libjpeg")),
    ("colour conversion YUV->BGR (swscale)", ("libswscale", "sws_scale")),
    ("H.264 decode (libavcodec)", ("libavcodec", "avcodec_")),
    ("demux and read (libavformat)", ("libavformat", "av_read_frame")),
    ("framing (msgpack header + join)", ("encode_frame", "_pack (common/protocol.py", "msgpack")),
    ("ZeroMQ send and I/O thread", ("libzmq", "FramePublisher.send", "Socket.send")),
    ("frame hand-off (FrameSlot)", ("FrameSlot",)),
    ("status and describe", ("_send_status", "ControlServer", "describe")),
    ("supervisor and reports", ("supervisor", "camera_process.py", "connection.py")),
    ("rest of cv2.VideoCapture.read", ("OpenCVSource.read", "cv2.abi3")),
)


# A stack whose innermost Python frame is one of these is a thread waiting, not working: py-spy
# cannot tell in --native mode (it stops the process to sample it), so they are left out.
WAITING = (
    "Condition.wait (",
    "Event.wait (",
    "GarbageCollectorThread.run (",
    "select (selectors.py",
    "Poller.poll (",
    "Socket.poll (",
    "Connection.poll (",
    "_wait_for_tstate_lock (",
    "wait (multiprocessing/connection.py",
)


def waiting(stack: str) -> bool:
    python = [f for f in stack.split(";") if ".py:" in f]
    return bool(python) and any(w in python[-1] for w in WAITING)


def stage_of(stack: str) -> str:
    for stage, needles in STAGES:
        if any(n in stack for n in needles):
            return stage
    return "other (Python, libc, kernel entry)"


def thread_of(stack: str) -> str:
    for part in stack.split(";"):
        if part.startswith("thread ("):
            name = part.split(":", 1)[1].strip() if ":" in part else part
            return name if not name.startswith("0x") else "native thread"
    return "?"


def summarise(raw: Path) -> str:
    by_stage: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        if waiting(stack):
            continue
        total += n
        by_stage[stage_of(stack)] += n
        thread = thread_of(stack)
        if thread in ("native thread", "?") and "libavcodec" in stack:
            thread = "FFmpeg decoder threads"
        by_thread[thread] += n
    lines = [
        f"{total} samples of the capture node at work (all processes and threads; waits left out)",
        "",
        "by stage:",
    ]
    lines += [f"  {100 * n / total:5.1f} %  {stage}" for stage, n in by_stage.most_common()]
    lines += ["", "by thread:"]
    lines += [f"  {100 * n / total:5.1f} %  {thread}" for thread, n in by_thread.most_common()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="benchmarks.profile_node", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = p.parse_args(argv)
    work = args.out / "profile-work"
    clip = make_clip(args.out / "media")
    node = CaptureNodeProcess(clip.path, work)
    consumer = None
    try:
        control = node.wait_streaming()
        out = work / "consumer.json"
        consumer = Helper("consumer", agent("receive", "framebus", "--node", control, "--out", str(out)), work)
        consumer.wait_for("ready")
        raw = args.out / "capture-node-profile.txt"
        spy = Path(sys.executable).parent / "py-spy"
        command = [str(spy), "record", "--pid", str(node.pid), "--subprocesses", "--native", "--threads"]
        command += ["--format", "raw", "--rate", "100", "--duration", f"{args.seconds:.0f}", "-o", str(raw)]
        subprocess.run(command, check=True, capture_output=True)
    finally:
        if consumer is not None:
            consumer.stop()
        node.stop()
    print(summarise(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
