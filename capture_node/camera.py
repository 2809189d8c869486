"""One camera: a grab thread (source -> newest frame) and a publish thread (encode -> socket).

Data path: source.read() -> FrameSlot -> encode once -> FramePublisher. Encoding happens once
per published frame whatever the number of subscribers.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, replace

import zmq

from capture_node.config import CameraConfig
from capture_node.frame_slot import FrameSlot
from capture_node.sources import Source, open_source
from common import jpeg
from common.protocol import CameraInfo, Frame, FrameHeader, Status, encode_frame, encode_status
from common.publisher import FramePublisher
from common.ratelimit import RateLimitedLog
from common.redact import redact_url
from common.sockets import StreamOptions

log = logging.getLogger("capture_node.camera")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


@dataclass(frozen=True)
class CameraState:
    state: str = "connecting"
    reason: str = ""
    attempt: int = 0
    retry_in_s: float = 0.0
    width: int = 0
    height: int = 0
    source_fps: float = 0.0


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with jitter, capped: a dead camera costs almost nothing."""
    base = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, attempt - 1))
    return base * random.uniform(0.8, 1.2)


class Camera:
    def __init__(self, ctx: zmq.Context, config: CameraConfig, status_interval: float) -> None:
        self.config = config
        self._status_interval = status_interval
        self._every_frame = config.delivery == "every-frame"
        options = StreamOptions(self._every_frame, config.socket_buffer, config.queue_frames)
        self._publisher = FramePublisher(ctx, config.bind, options)  # bind errors surface here
        self.endpoint = self._publisher.endpoint
        self._slot = FrameSlot(lossless=self._every_frame)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = CameraState()
        self._log = RateLimitedLog(log)
        self.published = 0
        self._grab_thread = threading.Thread(target=self._grab_loop, name=f"grab-{config.id}", daemon=True)
        self._publish_thread = threading.Thread(target=self._publish_loop, name=f"publish-{config.id}", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._grab_thread.start()
        self._publish_thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._slot.close()

    def stop(self, timeout: float = 0.5) -> None:
        """Stop both threads. A read() stuck in native code cannot be interrupted: the grab
        thread is a daemon and is abandoned after the timeout."""
        self.request_stop()
        self._publish_thread.join(timeout)
        self._grab_thread.join(timeout)

    def info(self) -> CameraInfo:
        s = self.state()
        fps = self.config.fps or s.source_fps
        return CameraInfo(self.config.id, self.endpoint, s.width, s.height, fps, s.state, self.config.delivery)

    def state(self) -> CameraState:
        with self._lock:
            return self._state

    def _set_state(self, **changes: object) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ grab thread

    def _grab_loop(self) -> None:
        cam = self.config.id
        attempt = 0
        while not self._stop.is_set():
            try:
                source = open_source(self.config)
            except Exception as exc:  # any failure to open is retried; the node keeps running
                attempt += 1
                delay = backoff_delay(attempt)
                reason = redact_url(str(exc))
                self._set_state(state="source-error", reason=reason, attempt=attempt, retry_in_s=delay)
                self._log.warning(f"open-{cam}", "camera %s: %s; retry %d in %.1f s", cam, reason, attempt, delay)
                self._stop.wait(delay)
                continue
            info = source.info
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
                redact_url(self.config.source),
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
            if outcome == "failed":
                attempt = 1
                delay = backoff_delay(attempt)
                self._set_state(
                    state="reconnecting", reason="stream stopped delivering frames", attempt=attempt, retry_in_s=delay
                )
                log.warning("camera %s: stream stopped delivering frames; reconnecting in %.1f s", cam, delay)
                self._stop.wait(delay)

    def _read_until_done(self, source: Source) -> str:
        """Read frames into the slot. Returns 'stopped', 'ended' or 'failed'."""
        info = source.info
        interval = 1.0 / info.fps if info.paced and info.fps > 0 else 0.0
        next_read = time.monotonic()
        while not self._stop.is_set():
            if interval:
                delay = next_read - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_read = max(next_read + interval, time.monotonic() - interval)
            image = source.read()
            if image is None:
                if not info.is_file:
                    return "failed"
                if self.config.loop and source.rewind():
                    continue
                return "ended"
            if info.width != image.shape[1] or info.height != image.shape[0]:
                self._set_state(width=image.shape[1], height=image.shape[0])
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
        next_due = 0.0
        while not self._stop.is_set():
            if self._every_frame and not self._publisher.wait_for_subscriber(self._status_interval):
                continue
            wait = max(0.0, self._status_interval - (time.monotonic() - last_sent))
            grabbed = self._slot.take(timeout=wait)
            if grabbed is None:
                if not self._stop.is_set() and time.monotonic() - last_sent >= self._status_interval:
                    self._send_status(last_frame)
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
            frame = self._encode(grabbed.image, grabbed.capture_ns)
            if frame is None:
                continue
            if self._publisher.send(encode_frame(frame.header, frame.jpeg), self._stop):
                self.published += 1
                last_frame = frame
                last_sent = time.monotonic()

    def _publish_interval(self) -> float:
        """Only throttle when asked for fewer fps than the source delivers."""
        target = self.config.fps
        source_fps = self.state().source_fps
        if target and (not source_fps or target < source_fps * 0.99):
            return 1.0 / target
        return 0.0

    def _encode(self, image: object, capture_ns: int) -> Frame | None:
        try:
            data = jpeg.encode_bgr(image, self.config.quality)  # type: ignore[arg-type]
        except Exception as exc:
            self._log.warning(f"encode-{self.config.id}", "camera %s: cannot encode frame: %s", self.config.id, exc)
            return None
        height, width = image.shape[:2]  # type: ignore[attr-defined]
        header = FrameHeader(self.config.id, self.published, capture_ns, time.time_ns(), width, height)
        return Frame(header, memoryview(data))

    def _send_status(self, last_frame: Frame | None) -> None:
        s = self.state()
        status = Status(
            camera=self.config.id,
            state=s.state,
            publish_ns=time.time_ns(),
            last_seq=last_frame.header.seq if last_frame else -1,
            reason="".join(c if c.isprintable() else " " for c in s.reason)[:500],
            attempt=s.attempt,
            retry_in_s=min(s.retry_in_s, 86400.0),
            frame=None if self._every_frame else last_frame,
        )
        self._publisher.try_send(encode_status(status))
