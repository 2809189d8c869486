"""The newest-frame slot every web client waits on."""

from __future__ import annotations

import asyncio
from typing import Any

from framebus.common.protocol import Frame, FrameHeader
from framebus.worker_node.web_feed import CameraFeed, FeedHub, FeedSnapshot


def frame(seq: int) -> Frame:
    return Frame(FrameHeader("cam1", seq, seq, seq, 4, 2), memoryview(b"\xff\xd8%d\xff\xd9" % seq))


def test_a_waiting_client_gets_the_newest_frame_and_skips_the_ones_it_missed() -> None:
    async def scenario() -> None:
        feed = CameraFeed("cam1")
        waiter = asyncio.create_task(feed.newer_than(0))
        await asyncio.sleep(0)  # let the client start waiting
        feed.publish(frame(1))
        version, got = await asyncio.wait_for(waiter, 5)
        assert (version, got.header.seq) == (1, 1)
        for seq in range(2, 10):  # the client is busy while these arrive
            feed.publish(frame(seq))
        version, got = await asyncio.wait_for(feed.newer_than(version), 5)
        assert (version, got.header.seq) == (9, 9)  # the newest, not the next
        late = asyncio.create_task(feed.newer_than(version))
        await asyncio.sleep(0.05)
        assert not late.done()  # nothing newer: it waits
        feed.publish(frame(10))
        assert (await asyncio.wait_for(late, 5))[1].header.seq == 10

    asyncio.run(scenario())


def test_many_clients_share_one_slot() -> None:
    async def scenario() -> None:
        feed = CameraFeed("cam1")
        waiters = [asyncio.create_task(feed.newer_than(0)) for _ in range(50)]
        await asyncio.sleep(0)
        feed.publish(frame(1))
        results = await asyncio.wait_for(asyncio.gather(*waiters), 5)
        assert {r[1].header.seq for r in results} == {1}
        assert len({id(r[1]) for r in results}) == 1  # the same bytes for everyone

    asyncio.run(scenario())


def test_hub_keeps_stats_and_frames_per_camera() -> None:
    async def scenario() -> None:
        hub = FeedHub()
        hub.update("cam1", FeedSnapshot(state="streaming", fps=30.0, received=5), frame(4))
        hub.update("cam2", FeedSnapshot(state="stale", reason="nothing received for 3.0 s"), None)
        one, two = hub.feeds["cam1"].status(), hub.feeds["cam2"].status()
        assert (one["state"], one["fps"], one["seq"], one["width"], one["clients"]) == ("streaming", 30.0, 4, 4, 0)
        assert (two["state"], two["seq"], two["age_ms"]) == ("stale", None, None)

    asyncio.run(scenario())


def test_a_wall_client_watching_a_feed_is_woken_by_each_frame_and_by_its_end() -> None:
    async def scenario() -> None:
        feed = CameraFeed("cam1")
        wake = asyncio.Event()
        feed.watchers.add(wake)
        feed.publish(frame(1))
        assert wake.is_set()
        wake.clear()
        feed.close()
        assert wake.is_set()  # the client lets the camera go at once

    asyncio.run(scenario())


def test_the_hub_status_lists_cameras_in_order_and_the_nodes() -> None:
    async def scenario() -> None:
        hub = FeedHub()
        hub.update("b", FeedSnapshot(state="streaming"), frame(1))
        hub.update("a", FeedSnapshot(state="stale"), None)
        body: dict[str, Any] = hub.status()
        assert [c["camera"] for c in body["cameras"]] == ["a", "b"] and body["nodes"] == []

    asyncio.run(scenario())
