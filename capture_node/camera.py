"""One camera: a grab thread (source -> newest frame) and a publish thread (encode -> socket).

Data path: source.read() -> FrameSlot -> encode once -> StreamPublisher (sequence numbers, status,
pull server) -> FramePublisher. Encoding happens once
per published frame whatever the number of subscribers. A Camera runs inside its own process
(see camera_process.py), so that a capture stuck in native code can be killed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import zmq

from framebus.capture_node.config import CameraConfig
from framebus.capture_node.frame_slot import FrameSlot
from framebus.capture_node.sources import Source, open_source, picture_size
from framebus.common import jpeg
from framebus.common.protocol import CameraInfo
from framebus.common.publisher import FramePublisher
from framebus.common.pull_server import PullServer
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.redact import redact
from framebus.common.security import CurveServer
from framebus.common.sockets import StreamOptions
from framebus.common.stream import StreamPublisher, printable
from framebus.common.words import Delivery, State

log = logging.getLogger("capture_node.camera")

BACKOFF_FIRST_S = 0.5
PUBLISH_WAIT_S = 0.1  # longest wait in the publish thread before it looks at the stop flag
PUBLISH_JOIN_S = 2.0  # stop() waits this long for it (it wakes every PUBLISH_WAIT_S)


@dataclass(frozen=True)
class CameraState:
    state: State = State.CONNECTING
    reason: str = ""
    attempt: int = 0
    retry_in_s: float = 0.0
    width: int = 0
    height: int = 0
    source_fps: float = 0.0
    # Counters since the camera process started (the supervisor carries them over restarts).
    grabbed: int = 0
    published: int = 0
    encode_seconds: float = 0.0
    reconnects: int = 0
    open_errors: int = 0
    encode_errors: int = 0


COUNTERS = ("grabbed", "published", "encode_seconds", "reconnects", "open_errors", "encode_errors")


def backoff_delay(attempt: int, cap: float) -> float:
    """Exponential backoff with jitter, capped: a dead camera costs almost nothing."""
    base = min(cap, BACKOFF_FIRST_S * 2 ** max(0, attempt - 1))
    return base * random.uniform(0.8, 1.2)


class Camera:
    """Grab, pace and encode one source. What goes out, and what is said when nothing does, is
    its StreamPublisher's; `opener` makes the source (tests pass a fake one)."""

    def __init__(
        self,
        ctx: zmq.Context,
        config: CameraConfig,
        status_interval: float,
        security: CurveServer | None = None,
        opener: Callable[[CameraConfig], Source] = open_source,
    ) -> None:
        self.config = config
        self._open = opener
        self._every_frame = config.delivery == Delivery.EVERY_FRAME
        options = StreamOptions(
            self._every_frame, config.socket_buffer, config.queue_frames, notsent_lowat=config.notsent_lowat
        )
        # bind errors surface here
        self._socket = FramePublisher(ctx, config.bind, options, config.connect, security)
        self.endpoint = self._socket.endpoint
        try:
            self._pull = PullServer(ctx, config.pull_bind, config.id, security, status_interval)
        except zmq.ZMQError:
            self._socket.close()
            raise
        self.pull_endpoint = self._pull.endpoint
        self._stream = StreamPublisher(config.id, self._socket, status_interval, tap=self._pull)
        self._slot = FrameSlot(lossless=self._every_frame)
        self._playing_file = False  # the open source is a video file (set by the grab thread)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = CameraState()
        self._counts: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self._last_grab = time.monotonic()
        self._native_since: float | None = None
        self._log = RateLimitedLog(log)
        self._grab_thread = threading.Thread(target=self._grab_loop, name=f"grab-{config.id}", daemon=True)
        self._publish_thread = threading.Thread(target=self._publish_loop, name=f"publish-{config.id}", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._grab_thread.start()
        self._publish_thread.start()
        self._pull.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._slot.close()

    def stop(self, timeout: float = 0.5) -> None:
        """Stop both threads. A read() stuck in native code cannot be interrupted: the grab
        thread is a daemon and is abandoned after the timeout. The publish thread only ever
        waits in slices of PUBLISH_WAIT_S, so it is always joined: its socket must not be
        closed under it (a context destroyed while it polls raised ZMQError in it)."""
        self.request_stop()
        self._pull.stop()
        self._publish_thread.join(max(timeout, PUBLISH_JOIN_S))
        if self._publish_thread.is_alive():
            log.warning("camera %s: publish thread did not stop within %.1f s", self.config.id, PUBLISH_JOIN_S)
        self._grab_thread.join(timeout)

    def pool_infos(self) -> tuple[CameraInfo, ...]:
        """The describe entries of the streams of this camera's worker pools."""
        return self._pull.pool_infos()

    def state(self) -> CameraState:
        """The state with the counters folded in (read a few times a second, not per frame)."""
        with self._lock:
            return replace(self._state, **self._counts)  # type: ignore[arg-type]

    def _set_state(self, **changes: object) -> None:
        with self._lock:
            old = self._state
            self._state = replace(old, **changes)  # type: ignore[arg-type]
            changed = self._state.state != old.state
        if changed:
            self._slot.interrupt()  # the publish thread tells the workers at once

    def _count(self, field: str, amount: float = 1) -> None:
        # Plain numbers, not a new frozen CameraState per frame: that was ~4% of the node's CPU.
        with self._lock:
            self._counts[field] += amount

    def stuck_for(self) -> float:
        """Seconds the grab thread has been inside an open() or read() (0 when it is not).
        Both are bounded by timeouts; far beyond them, the capture is hung in native code."""
        since = self._native_since
        return time.monotonic() - since if since is not None else 0.0

    # ------------------------------------------------------------------ grab thread

    def _grab_loop(self) -> None:
        cam = self.config.id
        attempt = 0
        while not self._stop.is_set():
            self._native_since = time.monotonic()
            try:
                source = self._open(self.config)
            except Exception as exc:  # any failure to open is retried, forever; the node keeps running
                self._native_since = None
                attempt += 1
                delay = backoff_delay(attempt, self.config.reconnect_max)
                reason = printable(redact(str(exc)))
                self._set_state(state=State.SOURCE_ERROR, reason=reason, attempt=attempt, retry_in_s=delay)
                self._count("open_errors")
                self._log.warning(f"open-{cam}", "camera %s: %s; retry %d in %.1f s", cam, reason, attempt, delay)
                self._stop.wait(delay)
                continue
            self._native_since = None
            info = source.info
            self._playing_file = info.is_file
            self._last_grab = time.monotonic()
            self._set_state(
                state=State.STREAMING,
                reason="",
                attempt=0,
                retry_in_s=0.0,
                width=info.width,
                height=info.height,
                source_fps=info.fps,
            )
            log.info(
                "camera %s: streaming %s (%dx%d @ %.1f fps)",
                cam,
                redact(self.config.source),
                info.width,
                info.height,
                info.fps,
            )
            try:
                outcome = self._read_until_done(source)
            finally:
                source.close()
            if outcome == State.ENDED:
                self._set_state(state=State.ENDED, reason="end of video file")
                log.info("camera %s: end of video file", cam)
                return
            if outcome != State.STOPPED:
                attempt = max(attempt, 0) + 1
                delay = backoff_delay(attempt, self.config.reconnect_max)
                self._set_state(state=State.RECONNECTING, reason=outcome, attempt=attempt, retry_in_s=delay)
                self._count("reconnects")
                log.warning("camera %s: %s; reconnecting in %.1f s", cam, outcome, delay)
                self._stop.wait(delay)

    def _read_until_done(self, source: Source) -> State | str:
        """Read frames into the slot. Returns State.STOPPED, State.ENDED or why the stream failed.

        A killed server makes read() fail at once; a frozen one makes it block a whole read
        timeout and then return a stale frame, for up to 3 timeouts. Both end the capture:
        an old capture never recovers, a new one does."""
        info = source.info
        interval = 1.0 / info.fps if info.paced and info.fps > 0 else 0.0
        next_read = time.monotonic()
        while not self._stop.is_set():
            if interval:
                delay = next_read - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_read = max(next_read + interval, time.monotonic() - interval)
            started = self._native_since = time.monotonic()
            image = source.read()
            self._native_since = None
            took = time.monotonic() - started
            if image is None:
                if not info.is_file:
                    return "stream stopped delivering frames"
                if self.config.loop and source.rewind():
                    continue
                return State.ENDED
            if not info.is_file and took >= self.config.read_timeout * 0.9:
                return f"no frame for {took:.1f} s (frozen stream)"
            self._last_grab = time.monotonic()
            width, height = picture_size(image)
            if info.width != width or info.height != height:
                self._set_state(width=width, height=height)
            self._count("grabbed")
            if not self._slot.put(image, time.time_ns()):
                break
        return State.STOPPED

    # ------------------------------------------------------------------ publish thread

    def _publish_loop(self) -> None:
        try:
            self._publish_frames()
        except Exception:
            log.exception("camera %s: publish thread failed", self.config.id)
        finally:
            self._stream.close()

    def _publish_frames(self) -> None:
        stream = self._stream
        next_due = 0.0
        while not self._stop.is_set():
            # In short waits: stop() joins this thread before the socket's context is destroyed.
            if self._every_frame and not self._socket.wait_for_subscriber(PUBLISH_WAIT_S):
                continue
            grabbed = self._slot.take(timeout=stream.status_wait())
            if grabbed is None:
                if self._stop.is_set():
                    break
                self._check_stalled()
                s = self.state()
                if stream.status_due(s.state):  # nothing goes out: say why
                    stream.send_status(s.state, s.reason, s.attempt, s.retry_in_s)
                continue
            interval = self._publish_interval()
            if interval:
                now = time.monotonic()
                if now < next_due:
                    if self._stop.wait(next_due - now):
                        break
                    grabbed = self._slot.take(timeout=0) or grabbed  # a newer one may have come
                next_due = max(next_due + interval, time.monotonic() - interval)
            if not self._wanted():
                stream.forget_frame()  # a status or pull must not hand a newcomer a frame from before
                continue
            data = self._encode(grabbed.image)
            if data is None:
                continue
            if stream.send_frame(data, picture_size(grabbed.image), grabbed.capture_ns, self._stop):
                self._count("published")

    def _wanted(self) -> bool:
        """Don't encode for nobody: only while a subscriber is connected or a pull request
        waits. Every-frame delivery waits for a subscriber before it takes a frame anyway; a
        video file encodes every frame it plays, so that one arriving after its end still
        finds its last frame."""
        if self._every_frame or self._playing_file:
            return True
        return self._socket.has_subscribers() or self._pull.waiting()

    def _check_stalled(self) -> None:
        """A frozen stream blocks read() in the grab thread: notice it from here, in time."""
        silent = time.monotonic() - self._last_grab
        if self.state().state == State.STREAMING and silent >= self.config.read_timeout:
            self._set_state(state=State.RECONNECTING, reason=f"no frame for {silent:.1f} s", attempt=1, retry_in_s=0.0)
            log.warning("camera %s: no frame for %.1f s; waiting for the capture to give up", self.config.id, silent)

    def _publish_interval(self) -> float:
        """Only throttle when asked for fewer fps than the source delivers."""
        target = self.config.fps
        source_fps = self.state().source_fps
        if target and (not source_fps or target < source_fps * 0.99):
            return 1.0 / target
        return 0.0

    def _encode(self, image: np.ndarray | bytes) -> bytes | None:
        """A camera's own JPEG (MJPEG sources, checked when read) goes out as it is."""
        if isinstance(image, bytes):
            return image
        started = time.perf_counter()
        try:
            data = jpeg.encode_bgr(image, self.config.quality)
        except Exception as exc:
            self._count("encode_errors")
            self._log.warning(f"encode-{self.config.id}", "camera %s: cannot encode frame: %s", self.config.id, exc)
            return None
        self._count("encode_seconds", time.perf_counter() - started)
        return data
