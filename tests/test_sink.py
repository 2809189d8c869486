"""worker_node.sink: the Driver, and each sink, run in-process against a fake receiver (the
seam under test: what a sink gets from the driver, and what the driver does with sinks)."""

from __future__ import annotations

import asyncio
import io
import math
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from rich.console import Console

from framebus.common.protocol import Frame, FrameHeader, decode
from framebus.common.words import State
from framebus.worker_node import mosaic
from framebus.worker_node.display import DisplayOptions, MosaicDisplay
from framebus.worker_node.handler import as_factory
from framebus.worker_node.node_control import NodeHealth
from framebus.worker_node.process import FrameProcessor, ProcessOptions
from framebus.worker_node.save import SavePolicy, SaveSink
from framebus.worker_node.sink import Driver, ReceiveOptions
from framebus.worker_node.stats import ReceiveStats
from framebus.worker_node.status_line import StatusLine, print_status
from framebus.worker_node.subscription import STALE, CameraStatus
from framebus.worker_node.top import TopTable
from framebus.worker_node.web_feed import FeedHub, Handover

JPEG = cv2.imencode(".jpg", np.full((48, 64, 3), (0, 0, 255), np.uint8))[1].tobytes()


@dataclass
class FakeSub:
    """What sinks read of a Subscription."""

    name: str
    stats: ReceiveStats = field(default_factory=ReceiveStats)
    status: CameraStatus = field(default_factory=lambda: CameraStatus(State.STREAMING))


def frame(camera: str, seq: int) -> Frame:
    now = time.time_ns()
    return Frame(FrameHeader(camera, seq, now, now, 64, 48), memoryview(JPEG))


class FakeReceiver:
    """Hands out the given batches, one per poll; then blocks as a FrameReceiver does: until the
    timeout or until a wake descriptor (the driver's stop(), a signal) is readable."""

    def __init__(self, batches: list[list[tuple[FakeSub, Frame]]], subs: list[FakeSub] | None = None) -> None:
        self._batches = list(batches)
        self.subscriptions = {s.name: s for s in subs or []}
        for batch in batches:
            for sub, _ in batch:
                self.subscriptions.setdefault(sub.name, sub)
        self.camera_info: dict[str, object] = {}
        self.wake_fds: list[int] = []
        self.polls: list[float] = []
        self.blocked = threading.Event()  # set when a poll found nothing and waits
        self.closed = False

    def node_health(self) -> list[NodeHealth]:
        return []

    def add_wake_fd(self, fd: int) -> None:
        self.wake_fds.append(fd)

    def poll(self, timeout_s: float) -> list[tuple[FakeSub, Frame]]:
        self.polls.append(timeout_s)
        if self._batches:
            batch = self._batches.pop(0)
            for sub, f in batch:
                sub.stats.frame(f.header.capture_ns)
            return batch
        waiter = select.poll()
        for fd in self.wake_fds:
            waiter.register(fd, select.POLLIN)
        self.blocked.set()
        waiter.poll(None if math.isinf(timeout_s) else int(timeout_s * 1000) + 1)
        return []

    def close(self) -> None:
        self.closed = True


class Recorder:
    """A sink that writes down what it was given."""

    def __init__(self, cadence: float = math.inf, done_after_frames: int = 0) -> None:
        self.cadence = cadence
        self.frames: list[tuple[str, int]] = []
        self.ticks: list[float] = []
        self.started = self.closed = False
        self._done_after = done_after_frames

    @property
    def done(self) -> bool:
        return bool(self._done_after) and len(self.frames) >= self._done_after

    def start(self, receiver: object) -> None:
        self.started = True

    def on_frame(self, sub: FakeSub, f: Frame) -> None:
        self.frames.append((sub.name, f.header.seq))

    def on_tick(self, receiver: object) -> None:
        self.ticks.append(time.monotonic())

    def close(self) -> None:
        self.closed = True


def driven(receiver: FakeReceiver, *sinks: object, **kwargs: float) -> Driver:
    return Driver(list(sinks), ReceiveOptions(()), open_source=lambda _ctx, _options: receiver, **kwargs)  # type: ignore[arg-type,misc]


# ----------------------------------------------------------------------------- the driver


def test_every_sink_gets_every_frame_then_ticks_at_its_cadence_until_the_duration() -> None:
    a, b = FakeSub("a"), FakeSub("b")
    receiver = FakeReceiver([[(a, frame("a", 1)), (b, frame("b", 1))], [(a, frame("a", 2))]])
    one, two = Recorder(cadence=0.1), Recorder()
    started = time.monotonic()
    driven(receiver, one, two, duration=0.55).run()
    elapsed = time.monotonic() - started
    assert one.frames == two.frames == [("a", 1), ("b", 1), ("a", 2)]
    assert 4 <= len(one.ticks) <= 6 and not two.ticks  # every 0.1 s; math.inf: never
    assert 0.5 <= elapsed < 2.0
    assert one.started and one.closed and two.closed and receiver.closed


def test_the_driver_rolls_the_fps_window_and_showing_it_does_not() -> None:
    cam = FakeSub("cam")
    receiver = FakeReceiver([[(cam, frame("cam", i))] for i in range(10)])
    driven(receiver, Recorder(), window_s=0.2, duration=0.3).run()
    assert cam.stats.fps > 0  # rolled once, at 0.2 s: ten frames in that window
    fps = cam.stats.fps
    out = io.StringIO()
    print_status([cam], out)  # type: ignore[list-item]
    print_status([cam], out)  # type: ignore[list-item]
    assert cam.stats.fps == fps and out.getvalue().count(f"{fps:5.1f} fps") == 2


def test_a_done_sink_ends_the_run_within_the_batch() -> None:
    cam = FakeSub("cam")
    receiver = FakeReceiver([[(cam, frame("cam", i)) for i in range(10)]])
    counter, other = Recorder(done_after_frames=3), Recorder()
    driven(receiver, counter, other).run()
    assert len(counter.frames) == 3 and len(other.frames) == 3  # `save --count 3`: three files, not ten
    assert counter.closed and other.closed and receiver.closed


def test_stop_from_another_thread_ends_a_blocked_poll_at_once() -> None:
    receiver = FakeReceiver([])
    driver = driven(receiver, Recorder(), window_s=math.inf)
    runner = threading.Thread(target=driver.run)
    runner.start()
    assert receiver.blocked.wait(10)
    assert math.isinf(receiver.polls[-1])  # no cadence, no window, no duration: nothing to wake for
    asked = time.monotonic()
    driver.stop()
    runner.join(5)
    assert not runner.is_alive() and time.monotonic() - asked < 1.0
    assert receiver.closed


def test_stop_before_run_makes_run_return_at_once() -> None:
    receiver = FakeReceiver([])
    driver = driven(receiver, Recorder())
    driver.stop()
    driver.run()
    assert receiver.closed and not receiver.polls


def test_sinks_and_receiver_are_closed_when_a_sink_raises() -> None:
    class Broken(Recorder):
        def on_frame(self, sub: FakeSub, f: Frame) -> None:
            raise RuntimeError("a bug")

    cam = FakeSub("cam")
    receiver = FakeReceiver([[(cam, frame("cam", 1))]])
    good, broken = Recorder(), Broken()
    with pytest.raises(RuntimeError):
        driven(receiver, good, broken).run()
    assert good.closed and broken.closed and receiver.closed


def test_a_sink_whose_start_raises_is_closed_and_later_ones_never_started() -> None:
    class FailsToStart(Recorder):
        def start(self, receiver: object) -> None:
            raise OSError("no window")

    first, failing, never = Recorder(), FailsToStart(), Recorder()
    with pytest.raises(OSError):
        driven(FakeReceiver([]), first, failing, never).run()
    assert first.closed and failing.closed and not never.started and not never.closed


# ----------------------------------------------------------------------------- the sinks


def test_save_sink_with_status_line_saves_and_says_what_was_not_saved_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cam = FakeSub("cam1")
    saver = SaveSink(out, SavePolicy(every_n=1), stop_after=2)
    receiver = FakeReceiver([[(cam, frame("cam1", 1))], [(cam, frame("cam1", 2))]])
    lines = io.StringIO()
    driven(receiver, saver, StatusLine(60.0, saver.take_notes, lines)).run()
    assert saver.count == 2 and len(list(out.glob("*.jpg"))) == 2 and saver.done

    gone = tmp_path / "gone"
    failing = SaveSink(gone, SavePolicy(every_n=1))
    gone.rmdir()  # checked writable at start; removed since (an unmounted disk)
    status = StatusLine(0.05, failing.take_notes, lines := io.StringIO())
    receiver = FakeReceiver([[(cam, frame("cam1", 3))]], subs=[cam])
    driven(receiver, failing, status, duration=0.3).run()
    printed = [line for line in lines.getvalue().splitlines() if line.startswith("cam1")]
    assert len(printed) >= 3, printed
    assert "not saved 1 (the directory is gone" in printed[0]
    assert all("not saved" not in line for line in printed[1:])  # said once, then forgotten


def test_top_table_shows_every_camera_and_stops_after_count() -> None:
    cam, stale = FakeSub("cam1"), FakeSub("cam2", status=CameraStatus(STALE, "nothing received for 3.0 s"))
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    table = TopTable(refresh_s=0.05, count=3, console=console)
    receiver = FakeReceiver([[(cam, frame("cam1", 1))]], subs=[cam, stale])
    driven(receiver, table, window_s=0.05).run()
    assert table.shown == 3 and table.done
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "│ cam1" in text and "streaming" in text and "│ cam2" in text and STALE in text


def test_display_draws_the_newest_frame_of_each_camera_in_its_tile() -> None:
    red, blank = FakeSub("a-red"), FakeSub("b-none")
    display = MosaicDisplay(DisplayOptions(("tcp://127.0.0.1:1",), width=640, height=360))
    display.on_frame(red, frame("a-red", 1))
    picture = display.render(FakeReceiver([], subs=[red, blank]))  # type: ignore[arg-type]
    assert picture.shape == (360, 640, 3)
    layout = mosaic.grid(2, 640, 360)

    def centre(index: int) -> np.ndarray:
        x, y = layout.origin(index)
        cx, cy = x + layout.tile_w // 2, y + layout.tile_h // 2
        return picture[cy - 10 : cy + 10, cx - 10 : cx + 10].reshape(-1, 3).mean(axis=0)

    assert centre(0)[2] > 200 and centre(0)[0] < 60  # the red camera (tiles in camera id order)
    assert centre(1)[2] < 100  # no frame yet: a blank tile
    assert display.cadence == min(0.03, 1 / 30)  # a frame waits to be drawn


def test_web_handover_gives_the_hub_the_newest_frame_of_each_camera() -> None:
    async def scenario() -> FeedHub:
        loop = asyncio.get_running_loop()
        hub = FeedHub()
        handover = Handover(loop.call_soon_threadsafe, hub)
        a, b = FakeSub("a"), FakeSub("b")
        receiver = FakeReceiver([], subs=[a, b])

        # What the receiving thread does, all of it before the loop takes the first hand-over:
        # called from the loop's own thread, so that the loop cannot run in between. (From a
        # thread of its own, a loaded machine sometimes let the loop take the start's hand-over
        # with frame 1 before frames 2-5 came: two versions, on Python 3.12 in a parallel run.)
        handover.start(receiver)  # type: ignore[arg-type]
        for seq in range(1, 6):
            handover.on_frame(a, frame("a", seq))  # type: ignore[arg-type]
        handover.on_frame(b, frame("b", 1))  # type: ignore[arg-type]
        behind = loop.create_future()  # queued after the hand-over: done once the loop has taken it
        loop.call_soon_threadsafe(behind.set_result, None)
        await asyncio.wait_for(behind, 5)
        feed = hub.feeds["a"]
        _, newest = await asyncio.wait_for(feed.newer_than(0), 5)
        assert newest.header.seq == 5 and feed.version == 1  # coalesced: one hand-over, the newest frame
        assert hub.feeds["b"].frame is not None and set(hub.feeds) == {"a", "b"}
        return hub

    hub = asyncio.run(scenario())
    assert hub.feeds["a"].stats.state == State.STREAMING


@pytest.fixture
def processor(tmp_path: Path) -> Iterator[FrameProcessor]:
    def grey(image: np.ndarray, header: FrameHeader) -> tuple[np.ndarray, dict[str, int]]:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), {"seq": header.seq}

    options = ProcessOptions(("tcp://127.0.0.1:1",), ("cam1",), control=f"ipc://{tmp_path}/control")
    made = FrameProcessor(as_factory(grey), options)
    yield made
    made.close()


def test_process_sink_handles_the_newest_frame_and_publishes_it(processor: FrameProcessor, tmp_path: Path) -> None:
    cam = FakeSub("cam1")
    processor.start(FakeReceiver([], subs=[cam]))  # type: ignore[arg-type]
    assert math.isinf(processor.cadence)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{tmp_path}/control-1")  # the derived stream cam1/annotated
    try:
        deadline, seq = time.monotonic() + 10, 0
        while not sub.poll(50):  # a PUB drops what it sends before the SUB has joined: send again
            assert time.monotonic() < deadline, "no derived frame"
            seq += 1
            processor.on_frame(cam, frame("cam1", seq))  # type: ignore[arg-type]
            processor.on_frame(cam, frame("cam1", seq + 1000))  # type: ignore[arg-type]  # newer: replaces it
            assert processor.cadence == 0.0  # work waits: tick at once
            processor.on_tick(FakeReceiver([]))  # type: ignore[arg-type]
            assert math.isinf(processor.cadence)
        message = sub.recv()
    finally:
        sub.close(0)
        ctx.destroy(0)
    derived = decode(message)
    assert isinstance(derived, Frame) and derived.header.camera == "cam1/annotated"
    assert derived.header.meta["results"] == {"seq": derived.header.meta["source"]["seq"]}
    assert derived.header.meta["source"]["seq"] > 1000  # only the newest frame was handled
    assert processor.handled == seq and processor.failed == 0
