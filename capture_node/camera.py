"""One camera: a grab thread (source -> newest frame) and a publish thread (encode -> socket).

Data path: source.read() -> FrameSlot -> encode once -> FramePublisher. Encoding happens once
per published frame whatever the number of subscribers. A Camera runs inside its own process
(see camera_process.py), so that a capture stuck in native code can be killed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
import zmq

from capture_node.config import CameraConfig
from capture_node.frame_slot import FrameSlot
from capture_node.pull_server import PullServer
from capture_node.sources import Source, is_video_file, open_source, picture_size
from common import jpeg
from common.protocol import CameraInfo, Frame, FrameHeader, Status, encode_frame, encode_status
from common.publisher import FramePublisher
from common.ratelimit import RateLimitedLog
from common.redact import redact
from common.security import CurveServer
from common.sockets import StreamOptions

log = logging.getLogger("capture_node.camera")

BACKOFF_FIRST_S = 0.5
PUBLISH_WAIT_S = 0.1  # longest wait in the publish thread before it looks at the stop flag
PUBLISH_JOIN_S = 2.0  # stop() waits this long for it (it wakes every PUBLISH_WAIT_S)


@dataclass(frozen=True)
class CameraState:
    state: str = "connecting"
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


def printable(text: str, limit: int = 500) -> str:
    return "".join(c if c.isprintable() else " " for c in text)[:limit]


class Camera:
    def __init__(
        self, ctx: zmq.Context, config: CameraConfig, status_interval: float, security: CurveServer | None = None
    ) -> None:
        self.config = config
        self._status_interval = status_interval
        self._every_frame = config.delivery == "every-frame"
        options = StreamOptions(
            self._every_frame, config.socket_buffer, config.queue_frames, notsent_lowat=config.notsent_lowat
        )
        # bind errors surface here
        self._publisher = FramePublisher(ctx, config.bind, options, config.connect, security)
        self.endpoint = self._publisher.endpoint
        try:
            self._pull = PullServer(ctx, config.pull_bind, config.id, security)
        except zmq.ZMQError:
            self._publisher.close()
            raise
        self.pull_endpoint = self._pull.endpoint
        self._slot = FrameSlot(lossless=self._every_frame)
        self._always_encode = self._every_frame or is_video_file(config.source)
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

    def info(self) -> CameraInfo:
        s = self.state()
        fps = self.config.fps or s.source_fps
        return CameraInfo(
            self.config.id, self.endpoint, s.width, s.height, fps, s.state, self.config.delivery, s.reason
        )

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
                source = open_source(self.config)
            except Exception as exc:  # any failure to open is retried, forever; the node keeps running
                self._native_since = None
                attempt += 1
                delay = backoff_delay(attempt, self.config.reconnect_max)
                reason = printable(redact(str(exc)))
                self._set_state(state="source-error", reason=reason, attempt=attempt, retry_in_s=delay)
                self._count("open_errors")
                self._log.warning(f"open-{cam}", "camera %s: %s; retry %d in %.1f s", cam, reason, attempt, delay)
                self._stop.wait(delay)
                continue
            self._native_since = None
            info = source.info
            self._last_grab = time.monotonic()
            self._set_state(
                state="streaming",
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
            if outcome == "ended":
                self._set_state(state="ended", reason="end of video file")
                log.info("camera %s: end of video file", cam)
                return
            if outcome != "stopped":
                attempt = max(attempt, 0) + 1
                delay = backoff_delay(attempt, self.config.reconnect_max)
                self._set_state(state="reconnecting", reason=outcome, attempt=attempt, retry_in_s=delay)
                self._count("reconnects")
                log.warning("camera %s: %s; reconnecting in %.1f s", cam, outcome, delay)
                self._stop.wait(delay)

    def _read_until_done(self, source: Source) -> str:
        """Read frames into the slot. Returns 'stopped', 'ended' or why the stream failed.

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
                return "ended"
            if not info.is_file and took >= self.config.read_timeout * 0.9:
                return f"no frame for {took:.1f} s (frozen stream)"
            self._last_grab = time.monotonic()
            width, height = picture_size(image)
            if info.width != width or info.height != height:
                self._set_state(width=width, height=height)
            self._count("grabbed")
            if not self._slot.put(image, time.time_ns()):
                break
        return "stopped"

    # ------------------------------------------------------------------ publish thread

    def _publish_loop(self) -> None:
        try:
            self._publish_frames()
        except Exception:
            log.exception("camera %s: publish thread failed", self.config.id)
        finally:
            self._publisher.close()

    def _publish_frames(self) -> None:
        last_sent = time.monotonic()
        last_frame: Frame | None = None
        told_state = "streaming"
        next_due = 0.0
        seq = 0
        while not self._stop.is_set():
            # In short waits: stop() joins this thread before the socket's context is destroyed.
            if self._every_frame and not self._publisher.wait_for_subscriber(PUBLISH_WAIT_S):
                continue
            wait = max(0.0, self._status_interval - (time.monotonic() - last_sent))
            grabbed = self._slot.take(timeout=wait)
            if grabbed is None:
                if self._stop.is_set():
                    break
                self._check_stalled()
                state = self.state().state
                if state != told_state or time.monotonic() - last_sent >= self._status_interval:
                    self._send_status(last_frame)  # nothing goes out: say why
                    told_state = state
                    last_sent = time.monotonic()
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
                last_frame = None  # a status must not hand a newcomer a frame from before
                continue
            frame = self._encode(grabbed.image, grabbed.capture_ns, seq)
            if frame is None:
                continue
            message = encode_frame(frame.header, frame.jpeg)
            self._pull.offer_frame(frame.header.seq, message)
            if self._publisher.send(message, self._stop):
                seq += 1
                self._count("published")
                last_frame = frame
                last_sent = time.monotonic()
                told_state = "streaming"

    def _wanted(self) -> bool:
        """Don't encode for nobody: only while a subscriber is connected or a pull request
        waits. Every-frame delivery waits for a subscriber before it takes a frame anyway; a
        video file encodes every frame it plays, so that one arriving after its end still
        finds its last frame."""
        if self._always_encode or self._publisher.has_subscribers() or self._pull.waiting():
            return True
        self._pull.forget_frame()
        return False

    def _check_stalled(self) -> None:
        """A frozen stream blocks read() in the grab thread: notice it from here, in time."""
        silent = time.monotonic() - self._last_grab
        if self.state().state == "streaming" and silent >= self.config.read_timeout:
            self._set_state(state="reconnecting", reason=f"no frame for {silent:.1f} s", attempt=1, retry_in_s=0.0)
            log.warning("camera %s: no frame for %.1f s; waiting for the capture to give up", self.config.id, silent)

    def _publish_interval(self) -> float:
        """Only throttle when asked for fewer fps than the source delivers."""
        target = self.config.fps
        source_fps = self.state().source_fps
        if target and (not source_fps or target < source_fps * 0.99):
            return 1.0 / target
        return 0.0

    def _encode(self, image: np.ndarray | bytes, capture_ns: int, seq: int) -> Frame | None:
        """A camera's own JPEG (MJPEG sources, checked when read) goes out as it is."""
        started = time.perf_counter()
        try:
            data = image if isinstance(image, bytes) else jpeg.encode_bgr(image, self.config.quality)
            self._count("encode_seconds", time.perf_counter() - started)
        except Exception as exc:
            self._count("encode_errors")
            self._log.warning(f"encode-{self.config.id}", "camera %s: cannot encode frame: %s", self.config.id, exc)
            return None
        width, height = picture_size(image)
        header = FrameHeader(self.config.id, seq, capture_ns, time.time_ns(), width, height)
        return Frame(header, memoryview(data))

    def _send_status(self, last_frame: Frame | None) -> None:
        s = self.state()
        status = Status(
            camera=self.config.id,
            state=s.state,
            publish_ns=time.time_ns(),
            last_seq=last_frame.header.seq if last_frame else -1,
            reason=printable(s.reason),
            attempt=s.attempt,
            retry_in_s=min(s.retry_in_s, 86400.0),
            frame=None if self._every_frame else last_frame,
        )
        message = encode_status(status)
        self._publisher.try_send(message)
        self._pull.offer_status(message)
