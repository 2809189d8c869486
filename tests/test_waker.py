"""common.waker and common.shutdown: what ends a blocked poll, from another thread or a signal."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from framebus.common.shutdown import ShutdownSignals
from framebus.common.waker import Waker


@pytest.mark.parametrize("pair", [False, True])
def test_wake_from_another_thread_ends_a_blocked_zmq_poll_until_cleared(pair: bool) -> None:
    waker = Waker(pair=pair)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(waker, zmq.POLLIN)
    try:
        assert poller.poll(0) == []
        timer = threading.Timer(0.2, waker.wake)
        started = time.monotonic()
        timer.start()
        assert dict(poller.poll(10_000)) == {waker.fileno(): zmq.POLLIN}
        assert time.monotonic() - started < 5
        waker.wake()  # again before it is cleared: still one readiness, and no error
        assert dict(poller.poll(0)) == {waker.fileno(): zmq.POLLIN}
        waker.clear()
        assert poller.poll(0) == []
        waker.clear()  # nothing pending: no error either
    finally:
        timer.join()
        sock.close(0)
        ctx.destroy(0)
        waker.close()


def test_wake_after_close_writes_nowhere() -> None:
    waker = Waker()
    number = waker.fileno()
    waker.close()
    reader, writer = os.pipe()  # takes the closed descriptor's number
    try:
        assert number in (reader, writer)
        waker.wake()
        waker.close()
        os.set_blocking(reader, False)
        with pytest.raises(BlockingIOError):
            os.read(reader, 16)
    finally:
        os.close(reader)
        os.close(writer)


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        signal.set_wakeup_fd(-1)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_each_stop_signal_wakes_the_poll_and_asks_to_stop(sig: int) -> None:
    signals = ShutdownSignals()
    poller = zmq.Poller()
    poller.register(signals.fd, zmq.POLLIN)
    threading.Timer(0.1, os.kill, (os.getpid(), sig)).start()
    deadline = time.monotonic() + 10
    while not signals.requested:  # the handler runs in the main thread, between two polls
        assert time.monotonic() < deadline
        poller.poll(1000)
    assert not signals.take_reload()
    signals.drain()
    assert poller.poll(0) == []


@pytest.mark.usefixtures("restore_signals")
def test_sighup_asks_for_a_reload_where_the_process_can_reload() -> None:
    signals = ShutdownSignals(reload=True)
    os.kill(os.getpid(), signal.SIGHUP)
    signals.wait(10)
    assert signals.take_reload() and not signals.take_reload() and not signals.requested
    os.kill(os.getpid(), signal.SIGTERM)
    signals.wait(10)
    assert signals.requested
