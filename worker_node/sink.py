"""The one shape of a worker stage: a Sink, fed by one Driver.

A sink gets every frame the receiver hands out (`on_frame`) and a call every `cadence` seconds
(`on_tick`) to show or publish what it has. The driver owns what every sink used to write
again: the ZeroMQ context, the FrameReceiver, the stop signals, the statistics window (fps is
rolled here, once, never by whoever shows it), the run's deadline and close().

    Driver([SaveSink(...), StatusLine(...)], receive_options, window_s=5.0).run(signals)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import zmq

from framebus.common.protocol import CameraInfo, Frame
from framebus.common.shutdown import ShutdownSignals
from framebus.common.waker import Waker
from framebus.worker_node.access import Access
from framebus.worker_node.node_control import NodeHealth
from framebus.worker_node.receiver import FrameReceiver
from framebus.worker_node.subscription import Subscription


class ReceiverView(Protocol):
    """What a sink may read of the receiver: the cameras followed and what the nodes said."""

    @property
    def subscriptions(self) -> Mapping[str, Subscription]: ...

    @property
    def camera_info(self) -> Mapping[str, CameraInfo]: ...

    def node_health(self) -> list[NodeHealth]: ...


class FrameSource(ReceiverView, Protocol):
    """What the driver needs of a receiver (FrameReceiver; a fake one in tests)."""

    def poll(self, timeout_s: float) -> list[tuple[Subscription, Frame]]: ...

    def add_wake_fd(self, fd: int) -> None: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """One worker stage. Called from the driver's thread only."""

    @property
    def cadence(self) -> float:
        """Seconds from one on_tick to the next (read after every call: it may change);
        0: as soon as possible (work is waiting); math.inf: never."""
        ...

    @property
    def done(self) -> bool:
        """True: the run is over for this sink (a count reached, the window closed)."""
        ...

    def start(self, receiver: ReceiverView) -> None: ...

    def on_frame(self, sub: Subscription, frame: Frame) -> None: ...

    def on_tick(self, receiver: ReceiverView) -> None: ...

    def close(self) -> None:
        """Once, when the run ends for whatever reason (also after start() raised)."""
        ...


class BaseSink:
    """A Sink that does nothing: a sink overrides only what it takes part in."""

    cadence: float = math.inf

    @property
    def done(self) -> bool:
        return False

    def start(self, receiver: ReceiverView) -> None:
        pass

    def on_frame(self, sub: Subscription, frame: Frame) -> None:
        pass

    def on_tick(self, receiver: ReceiverView) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ReceiveOptions:
    """Which cameras to receive, and how."""

    nodes: Sequence[str]
    cameras: Collection[str] = ()
    pull: bool = False  # ask for each frame (slow links) instead of subscribing
    listen: Sequence[str] = ()  # bind here for capture nodes that connect out
    access: Access = field(default_factory=Access)
    pool: str = ""  # pull as a member of this worker pool
    pump: bool = True  # False: the receiving thread reads conflated streams itself (common.sockets.StreamOptions)


def open_receiver(ctx: zmq.Context, options: ReceiveOptions) -> FrameSource:
    return FrameReceiver(
        ctx,
        options.nodes,
        options.cameras,
        pull=options.pull,
        listen=options.listen,
        access=options.access,
        pool=options.pool,
        pump=options.pump,
    )


class Driver:
    """Runs sinks on one receiver until stop(), a signal, the duration, or a sink is done.
    `window_s` is the statistics window (fps); `duration` 0 means no limit."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        options: ReceiveOptions,
        window_s: float = 1.0,
        duration: float = 0.0,
        open_source: Callable[[zmq.Context, ReceiveOptions], FrameSource] = open_receiver,
    ) -> None:
        self._sinks = list(sinks)
        self._options = options
        self._window_s = window_s
        self._duration = duration
        self._open_source = open_source
        self._waker: Waker | None = None  # stop() from another thread ends a blocked poll
        self._stopping = False
        self._receiver: FrameSource | None = None

    def subscriptions(self) -> list[Subscription]:
        """The cameras followed now (none before run() or after it): for metrics."""
        receiver = self._receiver
        return list(receiver.subscriptions.values()) if receiver is not None else []

    def stop(self) -> None:
        """From any thread, before run() or during it: run() returns soon after."""
        self._stopping = True
        waker = self._waker  # made by run() before it first looks at _stopping
        if waker is not None:
            waker.wake()

    def run(self, signals: ShutdownSignals | None = None) -> None:
        """Blocks until the end of the run; closes every sink, the receiver and the context."""
        waker = self._waker = Waker()
        ctx = zmq.Context()
        started: list[Sink] = []
        try:
            receiver = self._open_source(ctx, self._options)
            self._receiver = receiver
            receiver.add_wake_fd(waker.fileno())
            if signals is not None:
                receiver.add_wake_fd(signals.fd)
            for sink in self._sinks:
                started.append(sink)
                sink.start(receiver)
            self._loop(receiver, waker, signals)
        finally:
            try:
                for sink in started:
                    sink.close()
            finally:
                if self._receiver is not None:
                    self._receiver.close()
                    self._receiver = None
                ctx.destroy(0)
                waker.close()
                if signals is not None:
                    signals.drain()

    def _loop(self, receiver: FrameSource, waker: Waker, signals: ShutdownSignals | None) -> None:
        start = time.monotonic()
        deadline = start + self._duration if self._duration else math.inf
        next_window = start + self._window_s
        last = {id(sink): start for sink in self._sinks}  # the slot of each sink's previous tick
        while not self._stopping and not (signals is not None and signals.requested):
            now = time.monotonic()
            if now >= deadline:
                return
            wake_at = min((deadline, next_window, *(last[id(s)] + s.cadence for s in self._sinks)))
            for sub, frame in receiver.poll(max(0.0, wake_at - now)):
                for sink in self._sinks:
                    sink.on_frame(sub, frame)
                if self._any_done():
                    return  # at once: `save --count N` saves N files, not N + the rest of a batch
            waker.clear()
            now = time.monotonic()
            if now >= next_window:
                roll_windows(receiver.subscriptions.values())
                next_window += self._window_s
                if next_window <= now:  # fell a window behind: start again from now
                    next_window = now + self._window_s
            for sink in self._sinks:
                slot = last[id(sink)] + sink.cadence
                if now >= slot:
                    sink.on_tick(receiver)
                    # Paced from the previous slot, not from now, so that the time a tick takes
                    # does not lower the rate; one that fell a period behind starts again from now.
                    last[id(sink)] = slot if now - slot < sink.cadence else now
            if self._any_done():
                return

    def _any_done(self) -> bool:
        return any(sink.done for sink in self._sinks)


def roll_windows(subscriptions: Iterable[Subscription]) -> None:
    """The one place fps windows are rolled."""
    for sub in subscriptions:
        sub.stats.roll_window()
