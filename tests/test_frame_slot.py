"""capture_node.frame_slot: latest-only and lossless hand-off between grab and publish threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from framebus.capture_node.frame_slot import FrameSlot, Grabbed

BLOCKED_CHECK_S = 0.2  # how long a thread must stay blocked to count as "blocked"
DEADLINE_S = 5.0  # upper bound for anything that should happen promptly


def image(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, dtype=np.uint8)


class Runner:
    """Run a call in a thread; remember its result and signal when it started and ended."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.started = threading.Event()
        self.done = threading.Event()
        self.result: Any = None
        self._call = call
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.started.wait(DEADLINE_S)

    def _run(self) -> None:
        self.started.set()
        try:
            self.result = self._call()
        finally:
            self.done.set()

    def assert_blocked(self) -> None:
        self.thread.join(BLOCKED_CHECK_S)
        assert self.thread.is_alive(), "the call returned but should still be blocked"
        assert not self.done.is_set()

    def finish(self) -> Any:
        assert self.done.wait(DEADLINE_S), "the call is still blocked"
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()
        return self.result


# ----------------------------------------------------------------------------- latest


def test_latest_keeps_only_newest() -> None:
    slot = FrameSlot()
    for i in range(3):
        assert slot.put(image(i), 1000 + i) is True
    got = slot.take(timeout=1.0)
    assert isinstance(got, Grabbed)
    assert got.capture_ns == 1002
    assert got.number == 2
    assert int(got.image[0, 0, 0]) == 2
    assert slot.take(timeout=0.05) is None


def test_numbers_count_grabbed_frames_including_dropped() -> None:
    slot = FrameSlot()
    numbers = []
    for i in range(10):
        slot.put(image(i), i)
        if i % 3 == 0:
            got = slot.take(timeout=1.0)
            assert got is not None
            numbers.append(got.number)
    assert numbers == [0, 3, 6, 9]


def test_take_on_empty_slot_times_out() -> None:
    slot = FrameSlot()
    start = time.monotonic()
    assert slot.take(timeout=0.05) is None
    assert time.monotonic() - start < DEADLINE_S
    assert slot.newest() is None


def test_take_waits_for_a_put_from_another_thread() -> None:
    slot = FrameSlot()
    taker = Runner(lambda: slot.take(timeout=DEADLINE_S))
    taker.assert_blocked()
    assert slot.put(image(7), 77)
    got = taker.finish()
    assert got is not None and got.capture_ns == 77 and got.number == 0


def test_latest_put_never_blocks() -> None:
    slot = FrameSlot()
    putter = Runner(lambda: [slot.put(image(i % 256), i) for i in range(1000)])
    assert putter.finish() == [True] * 1000
    got = slot.take(timeout=1.0)
    assert got is not None and got.number == 999


def test_newest_returns_the_last_frame_even_after_take() -> None:
    slot = FrameSlot()
    slot.put(image(1), 1)
    slot.put(image(2), 2)
    newest = slot.newest()
    assert newest is not None and newest.capture_ns == 2
    taken = slot.take(timeout=1.0)
    assert taken is newest
    newest_after = slot.newest()
    assert newest_after is not None and newest_after.capture_ns == 2  # newest() does not consume
    assert slot.take(timeout=0.01) is None


# ----------------------------------------------------------------------------- lossless


def test_lossless_put_blocks_until_previous_frame_taken() -> None:
    slot = FrameSlot(lossless=True)
    assert slot.put(image(0), 0) is True  # the slot starts empty: no wait
    putter = Runner(lambda: slot.put(image(1), 1))
    putter.assert_blocked()

    first = slot.take(timeout=1.0)
    assert first is not None and first.number == 0
    assert putter.finish() is True

    second = slot.take(timeout=1.0)
    assert second is not None and second.number == 1 and second.capture_ns == 1


def test_lossless_delivers_every_frame_in_order() -> None:
    slot = FrameSlot(lossless=True)
    count = 200
    putter = Runner(lambda: [slot.put(image(i % 256), i) for i in range(count)])
    got = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < count and time.monotonic() < deadline:
        frame = slot.take(timeout=0.5)
        if frame is not None:
            got.append((frame.number, frame.capture_ns))
    assert putter.finish() == [True] * count
    assert got == [(i, i) for i in range(count)]


# ----------------------------------------------------------------------------- close


def test_close_unblocks_a_blocked_put() -> None:
    slot = FrameSlot(lossless=True)
    assert slot.put(image(0), 0)
    putter = Runner(lambda: slot.put(image(1), 1))
    putter.assert_blocked()
    slot.close()
    assert putter.finish() is False
    assert slot.put(image(2), 2) is False


def test_close_unblocks_a_blocked_take() -> None:
    slot = FrameSlot()
    taker = Runner(lambda: slot.take(timeout=60.0))
    taker.assert_blocked()
    start = time.monotonic()
    slot.close()
    assert taker.finish() is None
    assert time.monotonic() - start < DEADLINE_S


def test_put_after_close_is_refused_in_latest_mode() -> None:
    slot = FrameSlot()
    slot.close()
    assert slot.put(image(0), 0) is False
    assert slot.take(timeout=0.01) is None
    assert slot.newest() is None
