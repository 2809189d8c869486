"""The peers, one sender and one receiver each, used the way their documentation shows.

Every sender reads the same clip paced at 30 fps (source_clip.PacedReader) and JPEG-encodes
at quality 80; the capture time (taken right after the read) and a frame number travel with
the frame so that the receiver can tell its age.

- imagezmq 1.2 (PUB/SUB): ImageSender(REQ_REP=False) binds a PUB, ImageHub(REQ_REP=False)
  connects a SUB; send_jpg(msg, jpeg) with msg = "seq capture_ns", JPEG by simplejpeg at
  quality 80, 4:2:0 (the same encoder and bytes as framebus). A two-part message: no
  conflation possible; default high-water marks (1000 messages each side).
- vidgear 0.3 NetGear (pattern 2 = PUB/SUB): NetGear JPEG-encodes inside send() with
  simplejpeg at jpeg_compression_quality=80 (its own fixed 4:2:2 subsampling and fastdct) and
  decodes in a receive thread into a 96-frame deque; recv() pops the oldest. NetGear's
  receiver binds and its sender connects. Its receiver hands over send()'s `message` only in
  multi-server mode, so the one-consumer scenarios use multiserver_mode (one server) to carry
  the capture time; fan-out uses multiclient_mode (one server, N receivers: the only NetGear
  mode with several receivers), where no message is returned.
- The multiprocessing.Manager().list() stack recipe: the main process makes the Manager and
  the list, starts a writer and a reader process; the writer appends (seq, capture_ns, JPEG)
  and clears the stack when it reaches 100, the reader spins on len() and pops the top
  (the newest frame). JPEG as for imagezmq.
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from benchmarks.consumer import Delivery, consume, emit, frame_log
from benchmarks.source_clip import QUALITY, PacedReader
from framebus.common import jpeg

STACK_TOP = 100


def send_loop(clip: Path, send: Callable[[int, np.ndarray, int], None], stopped: Callable[[], bool], out: Path) -> None:
    """Read, hand to send(seq, image, capture_ns) until stopped; log the capture times."""
    reader = PacedReader(clip)
    sent = frame_log()
    seq = 0
    try:
        while not stopped():
            image, capture_ns = reader.read()
            send(seq, image, capture_ns)
            sent.append(capture_ns)
            seq += 1
    finally:
        reader.close()
        out.write_text(json.dumps({"capture_ns": list(sent)}))


# ----------------------------------------------------------------------------- imagezmq


def imagezmq_sender(clip: Path, stopped: Callable[[], bool], out: Path) -> None:
    import imagezmq

    sender = imagezmq.ImageSender(connect_to="tcp://127.0.0.1:*", REQ_REP=False)
    endpoint = sender.zmq_socket.getsockopt_string(zmq.LAST_ENDPOINT)
    emit({"endpoint": endpoint})

    def send(seq: int, image: np.ndarray, capture_ns: int) -> None:
        sender.send_jpg(f"{seq} {capture_ns}", jpeg.encode_bgr(image, QUALITY))

    try:
        send_loop(clip, send, stopped, out)
    finally:
        sender.close()


class ImagezmqReceiver:
    def __init__(self, endpoint: str) -> None:
        import imagezmq

        self._hub = imagezmq.ImageHub(open_port=endpoint, REQ_REP=False)

    def receive(self, timeout: float) -> Delivery | None:
        if not self._hub.zmq_socket.poll(int(timeout * 1000)):  # recv_jpg itself has no timeout
            return None
        msg, buffer = self._hub.recv_jpg()
        seq, capture_ns = (int(v) for v in msg.split())
        return Delivery(seq, capture_ns, buffer.buffer if hasattr(buffer, "buffer") else buffer)

    def close(self) -> None:
        self._hub.close()


# ----------------------------------------------------------------------------- NetGear


def _netgear(**kwargs: Any) -> Any:
    from vidgear.gears import NetGear

    return NetGear(address="127.0.0.1", protocol="tcp", pattern=2, logging=False, **kwargs)


def netgear_sender(clip: Path, ports: list[int], multiclient: bool, stopped: Callable[[], bool], out: Path) -> None:
    if multiclient:  # fan-out: one server connects to every receiver
        server = _netgear(port=[str(p) for p in ports], multiclient_mode=True, jpeg_compression_quality=QUALITY)
    else:  # one receiver: multi-server mode carries the message
        server = _netgear(port=str(ports[0]), multiserver_mode=True, jpeg_compression_quality=QUALITY)
    emit({"connected": True})

    def send(seq: int, image: np.ndarray, capture_ns: int) -> None:
        server.send(image, message={"seq": seq, "capture_ns": capture_ns})

    try:
        send_loop(clip, send, stopped, out)
    finally:
        server.close(kill=True)


class NetgearReceiver:
    def __init__(self, port: int, multiclient: bool) -> None:
        if multiclient:
            self._client = _netgear(port=str(port), receive_mode=True, multiclient_mode=True)
        else:
            self._client = _netgear(port=[str(port)], receive_mode=True, multiserver_mode=True)
        self._multiclient = multiclient
        emit({"bound": True})

    def receive(self, timeout: float) -> Delivery | None:
        data = self._client.recv()  # spins (sleep 10 us) until a frame: NetGear has no timeout
        if data is None:
            return None
        if self._multiclient:
            return Delivery(-1, 0, image=data)
        if len(data) == 3:
            _port, message, frame = data
            return Delivery(int(message["seq"]), int(message["capture_ns"]), image=frame)
        return Delivery(-1, 0, image=data[-1])

    def close(self) -> None:
        """Nothing: NetGear's close() closes the socket under its receive thread, which can
        abort libzmq (signaler.cpp assertion); the agent process exits right after instead."""


# ----------------------------------------------------------------------------- Manager stack


def stack_writer(stack: Any, clip: Path, stop: Any, out: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def send(seq: int, image: np.ndarray, capture_ns: int) -> None:
        stack.append((seq, capture_ns, jpeg.encode_bgr(image, QUALITY)))
        if len(stack) >= STACK_TOP:
            del stack[:]
            gc.collect()

    send_loop(clip, send, stop.is_set, out)


class StackReceiver:
    def __init__(self, stack: Any, stop: Any) -> None:
        self._stack = stack
        self._stop = stop

    def receive(self, timeout: float) -> Delivery | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if len(self._stack) != 0:  # the recipe's busy loop
                try:
                    seq, capture_ns, data = self._stack.pop()
                except IndexError:  # cleared by the writer in between
                    continue
                return Delivery(seq, capture_ns, data)
        return None

    def close(self) -> None:
        pass


def stack_reader(stack: Any, mode: str, stop: Any, ready: Any, out: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    receiver = StackReceiver(stack, stop)

    class _Ready:  # consume() emits on stdout; here the launcher reports readiness
        def receive(self, timeout: float) -> Delivery | None:
            delivery = receiver.receive(timeout)
            if delivery is not None:
                ready.set()
            return delivery

        def close(self) -> None:
            receiver.close()

    consume(_Ready(), mode, stop.is_set, out)


def stack_launcher(clip: Path, mode: str, out: Path, sent_out: Path, stopping: threading.Event) -> None:
    """The recipe's main process: Manager, list, writer and reader processes."""
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    stack = manager.list()
    stop, ready = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=stack_writer, args=(stack, clip, stop, sent_out), name="stack-writer")
    reader = ctx.Process(target=stack_reader, args=(stack, mode, stop, ready, out), name="stack-reader")
    writer.start()
    reader.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the stack reader got no frame within 60 s")
        broker = manager._process.pid  # type: ignore[attr-defined]  # the Manager's server process
        emit({"ready": True, "pids": {"sender": [writer.pid], "consumer": [reader.pid], "broker": [broker]}})
        stopping.wait()
    finally:
        stop.set()
        reader.join(15)
        writer.join(15)
        manager.shutdown()
