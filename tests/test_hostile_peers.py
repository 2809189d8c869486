"""A worker told about a rogue stream keeps serving the real cameras."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import zmq

from common.protocol import (
    CameraInfo,
    DescribeReply,
    FrameHeader,
    decode,
    encode_describe_reply,
    encode_frame,
)
from tests.processes import Processes, wait_until
from tests.test_end_to_end import SAVED as SAVED_NAME
from tests.test_end_to_end import saved_files

JPEG = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"


def rogue_messages(count: int) -> list[bytes]:
    rng = random.Random(7)
    good = encode_frame(FrameHeader("rogue", 1, 1, 1, 16, 16), JPEG)
    messages = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            messages.append(rng.randbytes(rng.randrange(0, 300)))
        elif kind == 1:
            messages.append(good[: rng.randrange(0, len(good))])
        elif kind == 2:
            messages.append(encode_frame(FrameHeader("../../etc", i, 1, 1, 16, 16), JPEG))
        elif kind == 3:
            messages.append(encode_frame(FrameHeader("real", i, 1, 1, 16, 16), JPEG))  # spoofs another camera
        else:
            mutated = bytearray(good)
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
            messages.append(bytes(mutated))
    return messages


class FakeNode:
    """Answers describe with one camera whose stream is a PUB socket we fill with garbage."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.control = ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control_port = self.control.bind_to_random_port("tcp://127.0.0.1")
        self.stream = ctx.socket(zmq.PUB)
        self.stream.setsockopt(zmq.LINGER, 0)
        self.stream_port = self.stream.bind_to_random_port("tcp://127.0.0.1")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        cam = CameraInfo("rogue", f"tcp://127.0.0.1:{self.stream_port}", 16, 16, 30.0, "streaming", "latest")
        while not self.stop.is_set():
            if self.control.poll(100):
                identity, request = self.control.recv_multipart()
                decode(request)
                reply = DescribeReply("rogue-node", time.time_ns(), (cam,))
                self.control.send_multipart([identity, encode_describe_reply(reply)])

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.control.close(0)
        self.stream.close(0)


def test_worker_survives_a_rogue_stream(nodes: Processes, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    capture, control = nodes.capture("--camera-id", "real", "--width", "160", "--height", "120", "--fps", "15")
    ctx = zmq.Context()
    fake = FakeNode(ctx)
    try:
        worker = nodes.worker(
            "save",
            "--node",
            control,
            "--node",
            f"tcp://127.0.0.1:{fake.control_port}",
            "--out",
            str(out),
            "--every-n",
            "1",
        )
        worker.wait_for(r"camera rogue: subscribed")
        worker.wait_for(r"camera real: subscribed")
        before = len(saved_files(out).get("real", []))
        for message in rogue_messages(5000):
            fake.stream.send(message)
        worker.wait_for(r"stream tcp://127\.0\.0\.1:\d+: dropped a malformed message")
        wait_until(lambda: len(saved_files(out).get("real", [])) > before + 15, 20, "real frames after the attack")
        assert worker.proc.poll() is None, worker.output
    finally:
        fake.close()
        ctx.term()
    # Bit flips in the payload can leave a valid frame of "rogue": saving that is fine.
    assert set(saved_files(out)) <= {"real", "rogue"}
    assert all(SAVED_NAME.match(name) for name in os.listdir(out))
    assert sorted(os.listdir(tmp_path)) == ["saved"]
    warnings = [line for line in worker.output.splitlines() if "malformed" in line]
    assert len(warnings) < 20, f"malformed messages are not rate-limited: {len(warnings)} lines"
    assert worker.stop() < 1.0
