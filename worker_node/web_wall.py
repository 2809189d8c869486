"""GET /wall: every camera of the web viewer live in one page over ONE WebSocket.

Why one socket: a browser opens at most 6 HTTP/1.1 connections per host, so a page with one
MJPEG <img> per camera showed 6 live tiles of 10. The wall carries the newest JPEG of every
camera the page can see, as it came from the wire (no decode), and the status, over one
WebSocket (docs/web.md specifies it):

    page -> viewer  "want CAM CAM ..."  the cameras whose tiles are visible now ("want": none)
                    "ack CAM"           the frame of CAM sent last has been drawn
    viewer -> page  binary: n (2 bytes, big-endian), n bytes of JSON {camera, seq, age_ms,
                    width, height}, the JPEG
                    text: the /api/status body, once a second

Why acks: a client has at most one frame per camera in flight, and the next one it gets is the
camera's newest then (the feed's slot), so a slow page (a throttled CPU, a slow link) gets
fewer frames, never older ones, and no buffer builds anywhere: the bytes in flight are bounded
by the frames in flight. Each client has its own send loop, which waits for its own socket to
drain: a slow client waits alone.

What a page says is bounded: message size, message rate (acks of frames in flight are free,
every other message spends a budget), cameras wanted (only those the viewer shows count), the
number of wall clients. A page from another origin is refused: a WebSocket is not held by the
browser's same-origin rule, so any website a user visits could read the cameras otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from framebus.common.protocol import Frame
from framebus.common.ratelimit import LogBudget, RateLimitedLog, TokenBucket
from framebus.worker_node.web_feed import MAX_FEEDS, CameraFeed, FeedHub

log = logging.getLogger("worker_node.web")

MAX_CLIENTS = 32  # wall pages served at once
MAX_MESSAGE = MAX_FEEDS * 260 + 64  # "want" with every camera, ids of up to 259 characters
MESSAGE_BURST, MESSAGES_PER_S = 50, 20.0  # messages other than acks of frames in flight
STATUS_EVERY_S = 1.0
HEARTBEAT_S = 30.0  # a peer that answers no ping for 15 s of this is closed (it holds a place)

_refused = RateLimitedLog(log, interval=60.0)
_events = LogBudget(log)


def pack(camera: str, frame: Frame) -> bytes:
    """One frame as the page reads it: a small JSON header in front of the JPEG from the wire."""
    h = frame.header
    age_ms = (time.time_ns() - h.capture_ns) / 1e6
    head = {"camera": camera, "seq": h.seq, "age_ms": round(age_ms, 1), "width": h.width, "height": h.height}
    encoded = json.dumps(head, separators=(",", ":")).encode()
    return b"".join((len(encoded).to_bytes(2, "big"), encoded, frame.jpeg))


def foreign_origin(request: web.Request) -> str:
    """Why the page that opened this socket is not the viewer's own ('' if it is, or if the
    peer is no browser: programs send no Origin)."""
    origin = request.headers.get("Origin")
    if origin is None or urlsplit(origin).netloc.lower() == request.host.lower():
        return ""
    return f"its page comes from {origin[:100]!r}, not from http://{request.host[:100]}/"


class WallClient:
    """One page: the cameras it wants, one frame in flight per camera at most, and the send
    loop that gives it each wanted camera's newest frame once its last one was acked."""

    def __init__(self, hub: FeedHub, ws: web.WebSocketResponse, peer: str) -> None:
        self.hub = hub
        self.ws = ws
        self.peer = peer
        self.wanted: dict[str, CameraFeed] = {}
        self.in_flight: set[str] = set()
        self.sent: dict[str, tuple[CameraFeed, int]] = {}  # camera -> (feed, version) sent last
        self.wake = asyncio.Event()
        self.status_due = True
        self.budget = TokenBucket(MESSAGE_BURST, MESSAGES_PER_S)

    # ------------------------------------------------------------------ what the page says

    async def read(self) -> str:
        """Reads until the page closes; returns why the viewer closes it instead ('' if not)."""
        async for message in self.ws:
            if message.type == WSMsgType.ERROR:  # aiohttp closed it ("Message size N exceeds limit M": 1009)
                return str(message.data)
            if message.type != WSMsgType.TEXT:
                return "a binary message: the page sends text only"
            problem = self.take(message.data)
            if problem:
                return problem
        return ""

    def take(self, text: str) -> str:
        """Acts on one message; returns what was wrong with it ('' if nothing)."""
        verb, _, rest = text.partition(" ")
        if verb == "ack" and rest in self.in_flight:
            self.in_flight.discard(rest)
            self.wake.set()
            return ""
        if not self.budget.take():
            return f"more than {MESSAGES_PER_S:g} messages a second besides acks"
        if verb == "want":
            self.want(rest.split())
        elif verb != "ack":  # an ack of nothing in flight is ignored (and spent the budget)
            return f"unknown message {text[:40]!r}: the page sends 'want CAMERA ...' and 'ack CAMERA'"
        return ""

    def want(self, cameras: list[str]) -> None:
        """Only cameras the viewer shows are kept: the set stays within MAX_FEEDS."""
        feeds = {c: feed for c in cameras if (feed := self.hub.feeds.get(c)) is not None}
        self._follow(feeds)

    def _follow(self, feeds: dict[str, CameraFeed]) -> None:
        for camera, feed in self.wanted.items():
            if feeds.get(camera) is not feed:
                feed.watchers.discard(self.wake)
                feed.clients -= 1
        for camera, feed in feeds.items():
            if self.wanted.get(camera) is not feed:
                feed.watchers.add(self.wake)
                feed.clients += 1
        self.wanted = feeds
        # What is kept per camera stays within the cameras shown (a page that scrolls still acks
        # the frames of the tiles it no longer wants, for free) and the cameras wanted.
        self.in_flight = {c for c in self.in_flight if c in feeds or c in self.hub.feeds}
        self.sent = {c: sent for c, sent in self.sent.items() if c in feeds}
        self.wake.set()

    def forget(self) -> None:
        self._follow({})

    # ------------------------------------------------------------------ what it is sent

    async def send(self) -> None:
        """Newest frames of the wanted cameras with nothing in flight, and the status each second."""
        ticker = asyncio.create_task(self._tick())
        try:
            while not self.ws.closed:
                await self.wake.wait()
                self.wake.clear()
                if self.status_due:
                    self.status_due = False
                    self._refollow()
                    await self.ws.send_str(json.dumps(self.hub.status()))
                for camera, feed in list(self.wanted.items()):
                    frame, version = feed.frame, feed.version
                    last_feed, last_version = self.sent.get(camera, (None, 0))
                    if frame is None or camera in self.in_flight or (last_feed is feed and last_version == version):
                        continue
                    self.in_flight.add(camera)
                    self.sent[camera] = (feed, version)
                    await self.ws.send_bytes(pack(camera, frame))  # waits while the socket drains
                    feed.sent += 1
        except (ConnectionError, RuntimeError):  # the page went away mid-write
            pass
        finally:
            ticker.cancel()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)  # the status cadence
            self.status_due = True
            self.wake.set()

    def _refollow(self) -> None:
        """A camera that went and came back is a new feed: follow it under the same name."""
        feeds = {c: self.hub.feeds.get(c, feed) for c, feed in self.wanted.items()}
        if any(feeds[c] is not feed for c, feed in self.wanted.items()):
            self._follow(feeds)


WALL_CLIENTS = web.AppKey("wall_clients", set[WallClient])


async def wall(request: web.Request, hub: FeedHub) -> web.StreamResponse:
    """The handler of GET /wall (web.py binds the hub)."""
    clients = request.app[WALL_CLIENTS]
    peer = request.remote or "?"
    foreign = foreign_origin(request)
    if foreign:
        _refused.warning("origin", "wall client %s refused: %s (open the viewer's own page)", peer, foreign)
        raise web.HTTPForbidden(text="the wall serves the viewer's own page only\n")
    if len(clients) >= MAX_CLIENTS:
        _refused.warning(
            "full", "wall client %s refused: %d wall pages open already, the most one viewer serves", peer, MAX_CLIENTS
        )
        raise web.HTTPServiceUnavailable(text=f"{MAX_CLIENTS} wall pages are open already: close one\n")
    ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE, heartbeat=HEARTBEAT_S)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="/wall is a WebSocket for the viewer's page: open / in a browser\n")
    await ws.prepare(request)
    client = WallClient(hub, ws, peer)
    clients.add(client)
    _events.info("wall", "wall client %s connected (%d now)", peer, len(clients))
    sender = asyncio.create_task(client.send())
    sender.add_done_callback(lambda _: asyncio.ensure_future(ws.close()))  # ends the reading too
    try:
        problem = await client.read()
        if problem:
            kind = " ".join(problem.split()[:2])  # one line a minute per kind of mistake
            _refused.warning(kind, "wall client %s closed: %s", peer, problem)
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=problem[:120].encode())
    finally:
        sender.cancel()
        client.forget()
        clients.discard(client)
        _events.info("wall", "wall client %s gone (%d left)", peer, len(clients))
    return ws
