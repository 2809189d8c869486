"""The wall's WebSocket (/wall) from a Python client: the want/ack protocol, its back-pressure,
and every way a peer can misuse it. A real viewer process and a real capture node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from framebus.worker_node.web_wall import MAX_CLIENTS, MAX_MESSAGE
from tests.support.processes import Processes, wait_until
from tests.support.wall_client import WallFrame, count_lines, next_frame, next_message, start_wall
from tests.test_web import cameras, clients

NAMES = ("left", "right/annotated")


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    """Reads until the viewer closes the socket; its close code and reason."""
    while True:
        message = await ws.receive(10)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code, str(message.extra or "")


async def connect_within(session: aiohttp.ClientSession, url: str, timeout: float) -> aiohttp.ClientWebSocketResponse:
    """Connects once the viewer has counted a closed page out (it refuses until then)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await session.ws_connect(url)
        except aiohttp.WSServerHandshakeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)  # poll interval


def test_a_page_gets_the_cameras_it_wants_and_the_status(nodes: Processes, tmp_path: Path) -> None:
    viewer, url = start_wall(nodes, tmp_path, NAMES)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url + "wall") as ws:
            status = await next_message(ws)
            assert isinstance(status, dict) and {c["camera"] for c in status["cameras"]} == set(NAMES)
            await ws.send_str("want nope right/annotated ../../etc left")  # unknown ids are ignored
            got: dict[str, list[WallFrame]] = {name: [] for name in NAMES}
            statuses = 0
            while min(len(frames) for frames in got.values()) < 20:
                message = await next_message(ws)
                if isinstance(message, dict):
                    statuses += 1
                    continue
                got[message.camera].append(message)
                await ws.send_str(f"ack {message.camera}")
            for name, frames in got.items():
                seqs = [f.seq for f in frames]
                assert seqs == sorted(set(seqs)), f"{name}: frames repeated or out of order: {seqs}"
                assert all(f.jpeg[:2] == b"\xff\xd8" and f.jpeg[-2:] == b"\xff\xd9" for f in frames)
                assert max(f.age_ms for f in frames) < 1000, [f.age_ms for f in frames]
            await ws.send_str("want left")  # right/annotated is no longer wanted: its frames stop
            wait_until(lambda: clients(url) == {"left": 1, "right/annotated": 0}, 10, "right/annotated unwanted")
            await drain_acking(ws, 0.5)
            after = [m for m in await drain_acking(ws, 1.5) if isinstance(m, WallFrame)]
            assert after and {f.camera for f in after} == {"left"}

    asyncio.run(scenario())
    wait_until(lambda: clients(url) == {"left": 0, "right/annotated": 0}, 10, "the page counted out")
    assert "Traceback" not in viewer.output


async def drain_acking(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[WallFrame | dict[str, object]]:
    """Everything that arrives for `seconds`, each frame acked at once."""
    got: list[WallFrame | dict[str, object]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            message = await next_message(ws, left)
        except asyncio.TimeoutError:
            break
        got.append(message)
        if isinstance(message, WallFrame):
            await ws.send_str(f"ack {message.camera}")
    return got


@pytest.mark.parametrize("pause_s", [2.0])
def test_a_page_that_does_not_ack_gets_one_frame_per_camera_then_the_newest(
    nodes: Processes, tmp_path: Path, pause_s: float
) -> None:
    """Without acks nothing more is sent, however long (no buffer anywhere); the frame after an
    ack is the camera's newest, not the next: the ones in between were skipped."""
    _, url = start_wall(nodes, tmp_path, NAMES)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url + "wall") as ws:
            await ws.send_str("want left right/annotated")
            first = {f.camera: f for f in [await next_frame(ws), await next_frame(ws)]}
            assert set(first) == set(NAMES)
            loop = asyncio.get_running_loop()
            end = loop.time() + pause_s  # 30 fps: a queue would hold ~60 frames per camera now
            while (left := end - loop.time()) > 0:
                try:
                    extra = await next_message(ws, left)
                except asyncio.TimeoutError:
                    break
                assert isinstance(extra, dict), f"a frame of {extra.camera} sent before the last one was acked"
            await ws.send_str("ack left")
            after = await next_frame(ws)
            assert after.camera == "left"
            skipped = after.seq - first["left"].seq - 1
            assert skipped >= 30, f"only {skipped} frames skipped in a {pause_s} s pause: not the newest"
            assert after.age_ms < 500, f"the frame after the pause was {after.age_ms:.0f} ms old"

    asyncio.run(scenario())


def test_the_wall_refuses_what_the_page_never_sends(nodes: Processes, tmp_path: Path) -> None:
    viewer, url = start_wall(nodes, tmp_path, NAMES)

    async def refused(message: str | bytes) -> tuple[int | None, str]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url + "wall") as ws:
            await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))
            return await closed_with(ws)

    async def flood() -> tuple[int | None, str]:
        async with aiohttp.ClientSession() as session, session.ws_connect(url + "wall") as ws:
            for _ in range(200):
                await ws.send_str("want left")
            return await closed_with(ws)

    async def scenario() -> None:
        assert await refused("want " + "x" * MAX_MESSAGE) == (1009, "")
        code, reason = await refused(b"\x00" * 10)
        assert code == 1008 and "binary" in reason
        code, reason = await refused("GET / HTTP/1.1")
        assert code == 1008 and "unknown message" in reason
        code, reason = await flood()
        assert code == 1008 and "messages a second" in reason
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
                await session.ws_connect(url + "wall", origin="http://evil.example")
            assert foreign.value.status == 403
            async with session.get(url + "wall") as plain:  # not a WebSocket at all
                assert plain.status == 400 and "open / in a browser" in await plain.text()

    asyncio.run(scenario())
    viewer.wait_for(r"wall client \S+ closed: more than 20 messages a second besides acks")
    out = viewer.output
    assert count_lines(out, rf"closed: Message size \d+ exceeds limit {MAX_MESSAGE}\n") == 1, out
    assert count_lines(out, r"closed: a binary message: the page sends text only") == 1
    assert count_lines(out, r"closed: unknown message 'GET / HTTP/1\.1'") == 1
    assert count_lines(out, r"refused: its page comes from 'http://evil\.example'") == 1
    assert "Traceback" not in out
    assert all(c["clients"] == 0 for c in cameras(url))  # every refused client counted out


def test_the_wall_serves_a_bounded_number_of_pages_and_says_so_once(nodes: Processes, tmp_path: Path) -> None:
    viewer, url = start_wall(nodes, tmp_path, NAMES)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(url + "wall") for _ in range(MAX_CLIENTS)]
            for _ in range(5):
                with pytest.raises(aiohttp.WSServerHandshakeError) as full:
                    await session.ws_connect(url + "wall")
                assert full.value.status == 503
            await sockets.pop().close()
            sockets.append(await connect_within(session, url + "wall", 10))  # a place is free again
            await sockets[-1].send_str("want left")
            assert (await next_frame(sockets[-1])).camera == "left"
            for ws in sockets:
                await ws.close()

    asyncio.run(scenario())
    out = viewer.output
    assert count_lines(out, rf"wall client \S+ refused: {MAX_CLIENTS} wall pages open already") == 1, out
    assert "Traceback" not in out
