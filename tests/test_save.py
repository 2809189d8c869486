"""worker_node.save: file names, every-N / every-T selection, retention and atomic writes."""

from __future__ import annotations

import calendar
import logging
import re
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from framebus.common.jpeg import encode_bgr
from framebus.common.protocol import Frame, FrameHeader, ProtocolError
from framebus.worker_node.save import SavePolicy, SaveSink, file_name
from tests.support.processes import Processes, wait_until

# 2026-11-25 18:37:11 UTC
T0 = calendar.timegm((2026, 11, 25, 18, 37, 11, 0, 0, 0)) * 1_000_000_000
MS = 1_000_000
S = 1_000_000_000


def make_jpeg(seed: int = 0, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_bgr(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), 80)


JPEG = make_jpeg()


def frame(camera: str = "cam1", seq: int = 0, capture_ns: int = T0, jpeg: bytes = JPEG) -> Frame:
    header = FrameHeader(camera=camera, seq=seq, capture_ns=capture_ns, publish_ns=capture_ns, width=32, height=32)
    return Frame(header, memoryview(jpeg))


def saved_seqs(paths: list[Path | None]) -> list[int]:
    return [int(p.stem.rsplit("_", 1)[1]) for p in paths if p is not None]


def listing(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def no_tmp_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- names


def test_file_name_format() -> None:
    f = frame("cam1", 42, T0 + 123_456_789)
    assert file_name(f) == "20261125T183711.123456Z_cam1_000000000042.jpg"


def test_file_name_epoch_and_large_seq() -> None:
    assert file_name(frame("a", 10**12 - 1, 999)) == "19700101T000000.000000Z_a_999999999999.jpg"


def test_the_longest_camera_ids_still_make_a_file_name(tmp_path: Path) -> None:
    """Four 64-character parts (259 characters, valid on the wire) would make a 300-byte name."""
    longest = "/".join(c * 64 for c in "abcd")
    other = "/".join(c * 64 for c in "abce")  # the same first 160 characters
    sink = SaveSink(tmp_path, SavePolicy(every_n=1, keep_files=10))
    for camera in (longest, other):
        assert sink.offer(frame(camera, 1, T0)) is not None
    names = listing(tmp_path)
    assert len(names) == 2 and all(len(n.encode()) <= 255 for n in names), names
    assert SaveSink(tmp_path, SavePolicy(every_n=1, keep_files=1)).offer(frame("cam1", 1, T0 + 1)) is not None
    assert len(listing(tmp_path)) == 1, "retention must see the shortened names too"


def test_names_sort_by_capture_time(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=1))
    # Capture times out of order, across a second, minute, day and year boundary; the seq
    # numbers deliberately do not follow capture order.
    times = [
        T0 + 5 * S,
        T0,
        T0 + 999_999_000,
        T0 + 1 * S,
        T0 + 61 * S,
        T0 + 86_400 * S,
        T0 + 40 * 86_400 * S,
        T0 - 1_000,
        T0 + 1_000,
    ]
    paths = [sink.offer(frame("cam1", seq, t)) for seq, t in zip(range(100, 0, -11), times, strict=False)]
    assert all(p is not None for p in paths)
    by_name = sorted(paths)  # type: ignore[type-var]
    by_time = [p for _, p in sorted(zip(times, paths, strict=True))]
    assert by_name == by_time
    assert listing(tmp_path) == [p.name for p in by_time]  # type: ignore[union-attr]


def test_derived_id_slash_becomes_plus_and_stays_inside_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sink = SaveSink(out, SavePolicy(every_n=1))
    p1 = sink.offer(frame("cam1/annotated", 7))
    p2 = sink.offer(frame("a/b/c/d", 8))
    assert p1 is not None and p2 is not None
    assert p1.name == "20261125T183711.000000Z_cam1+annotated_000000000007.jpg"
    assert p2.name == "20261125T183711.000000Z_a+b+c+d_000000000008.jpg"
    assert p1.parent == out and p2.parent == out
    assert listing(out) == sorted([p1.name, p2.name])
    assert listing(tmp_path) == ["out"]


@pytest.mark.parametrize("camera", ["../x", "a/../../b", "a b", "", "/abs"])
def test_invalid_camera_id_is_refused(tmp_path: Path, camera: str) -> None:
    with pytest.raises(ProtocolError):
        file_name(frame(camera))


# ----------------------------------------------------------------------------- every_n


def test_every_n_saves_multiples(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=10))
    paths = [sink.offer(frame(seq=s, capture_ns=T0 + s * MS)) for s in range(100)]
    assert saved_seqs(paths) == list(range(0, 100, 10))
    assert sink.count == 10
    assert len(listing(tmp_path)) == 10


def test_every_n_with_gaps_saves_first_frame_at_or_after_each_multiple(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=10))
    paths = [sink.offer(frame(seq=s, capture_ns=T0 + s * MS)) for s in range(1, 100, 2)]
    assert saved_seqs(paths) == [1, 11, 21, 31, 41, 51, 61, 71, 81, 91]


def test_every_n_with_large_gap_saves_once(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=10))
    paths = [sink.offer(frame(seq=s, capture_ns=T0 + s * MS)) for s in (0, 5, 47, 48, 50, 53, 80)]
    assert saved_seqs(paths) == [0, 47, 50, 80]


def test_every_n_sequence_restart_saves_right_away(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=10))
    first = [sink.offer(frame(seq=s, capture_ns=T0 + s * MS)) for s in range(58)]
    assert saved_seqs(first) == [0, 10, 20, 30, 40, 50]
    # The publisher restarted: its count begins again at 0, later in time.
    second = [sink.offer(frame(seq=s, capture_ns=T0 + S + s * MS)) for s in range(25)]
    assert saved_seqs(second) == [0, 10, 20]
    assert sink.count == 9
    assert len(listing(tmp_path)) == 9


def test_every_n_per_camera_independent(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=10))
    saved: dict[str, list[Path | None]] = {"a": [], "b": []}
    for s in range(30):
        for cam in ("a", "b"):
            saved[cam].append(sink.offer(frame(cam, s, T0 + s * MS)))
    assert saved_seqs(saved["a"]) == [0, 10, 20]
    assert saved_seqs(saved["b"]) == [0, 10, 20]
    # Camera b starting late does not depend on how far camera a got.
    late = sink.offer(frame("c", 3, T0))
    assert late is not None


def test_every_n_one_saves_everything(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=1))
    paths = [sink.offer(frame(seq=s, capture_ns=T0 + s * MS)) for s in range(20)]
    assert saved_seqs(paths) == list(range(20))


# ----------------------------------------------------------------------------- every_s


def test_every_s_one_per_aligned_slot(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_s=1.0))
    start = T0 + 350 * MS
    times = [start + i * 100 * MS for i in range(30)]  # 0.35 s .. 3.25 s past T0
    paths = [sink.offer(frame(seq=i, capture_ns=t)) for i, t in enumerate(times)]
    saved = [i for i, p in enumerate(paths) if p is not None]
    # First frame, then the first frame at or after each whole second.
    assert saved == [0, 7, 17, 27]
    assert [times[i] // S for i in saved] == [T0 // S + k for k in range(4)]


def test_every_s_fraction_and_per_camera(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_s=0.25))
    saved: dict[str, list[int]] = {"a": [], "b": []}
    for i in range(20):  # 0 .. 950 ms, 50 ms apart
        for cam in saved:
            if sink.offer(frame(cam, i, T0 + i * 50 * MS)) is not None:
                saved[cam].append(i)
    assert saved["a"] == saved["b"] == [0, 5, 10, 15]


def test_every_s_clock_going_back_saves_right_away(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_s=1.0))
    assert sink.offer(frame(seq=0, capture_ns=T0 + 10 * S)) is not None
    assert sink.offer(frame(seq=1, capture_ns=T0 + 10 * S + 500 * MS)) is None
    assert sink.offer(frame(seq=2, capture_ns=T0)) is not None


# ----------------------------------------------------------------------------- retention


def test_keep_files_keeps_newest(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=1, keep_files=5))
    paths = [sink.offer(frame(seq=s, capture_ns=T0 + s * S)) for s in range(12)]
    assert listing(tmp_path) == [p.name for p in paths[-5:]]  # type: ignore[union-attr]
    assert sink.count == 12


def test_keep_bytes_keeps_total_under_limit(tmp_path: Path) -> None:
    jpegs = [make_jpeg(seed, size=16 + 8 * (seed % 4)) for seed in range(15)]
    limit = 3 * max(len(j) for j in jpegs)
    sink = SaveSink(tmp_path, SavePolicy(every_n=1, keep_bytes=limit))
    paths = []
    for s, jpeg in enumerate(jpegs):
        paths.append(sink.offer(frame(seq=s, capture_ns=T0 + s * S, jpeg=jpeg)))
        total = sum(p.stat().st_size for p in tmp_path.iterdir())
        assert total <= limit
    names = listing(tmp_path)
    # What is kept is the newest run of files, the last one always included.
    assert names == [p.name for p in paths[-len(names) :]]  # type: ignore[union-attr]
    assert len(names) >= 3


def test_keep_bytes_smaller_than_one_file_keeps_the_newest(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=1, keep_bytes=len(JPEG) // 2))
    paths = [sink.offer(frame(seq=i, capture_ns=T0 + i * S)) for i in range(3)]
    assert listing(tmp_path) == [paths[-1].name]  # type: ignore[union-attr]


def test_keep_files_and_keep_bytes_together(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=1, keep_files=4, keep_bytes=2 * len(JPEG)))
    for s in range(6):
        sink.offer(frame(seq=s, capture_ns=T0 + s * S))
    assert len(listing(tmp_path)) == 2


def test_files_from_an_earlier_run_count_toward_retention(tmp_path: Path) -> None:
    first = SaveSink(tmp_path, SavePolicy(every_n=1))
    old = [first.offer(frame(seq=s, capture_ns=T0 + s * S)) for s in range(4)]
    assert len(listing(tmp_path)) == 4

    second = SaveSink(tmp_path, SavePolicy(every_n=1, keep_files=5))
    new = [second.offer(frame(seq=s, capture_ns=T0 + (100 + s) * S)) for s in range(3)]
    expected = [p.name for p in (old + new)[-5:]]  # type: ignore[union-attr]
    assert listing(tmp_path) == expected


def test_retention_leaves_other_files_alone(tmp_path: Path) -> None:
    foreign = ["notes.txt", "photo.jpg", "my_holiday_pic.jpg", "IMG_2020_0001.jpg"]
    for name in foreign:
        (tmp_path / name).write_bytes(b"not mine")
    sink = SaveSink(tmp_path, SavePolicy(every_n=1, keep_files=2))
    paths = [sink.offer(frame(seq=s, capture_ns=T0 + s * S)) for s in range(5)]
    assert listing(tmp_path) == sorted(foreign + [p.name for p in paths[-2:]])  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- writing


def test_saved_bytes_equal_the_jpeg_and_no_tmp_left(tmp_path: Path) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=1))
    jpegs = [make_jpeg(seed) for seed in range(5)]
    paths = [sink.offer(frame(seq=s, capture_ns=T0 + s * S, jpeg=j)) for s, j in enumerate(jpegs)]
    for path, jpeg in zip(paths, jpegs, strict=True):
        assert path is not None
        assert path.read_bytes() == jpeg
    assert no_tmp_files(tmp_path)
    assert all(not name.startswith(".") for name in listing(tmp_path))


def test_jpeg_slice_of_a_larger_buffer_is_written_exactly(tmp_path: Path) -> None:
    message = b"HEADER" + JPEG + b"TRAILER"
    view = memoryview(message)[6 : 6 + len(JPEG)]
    header = FrameHeader(camera="cam1", seq=0, capture_ns=T0, publish_ns=T0, width=32, height=32)
    path = SaveSink(tmp_path, SavePolicy(every_n=1)).offer(Frame(header, view))
    assert path is not None and path.read_bytes() == JPEG


def test_out_dir_is_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    SaveSink(out, SavePolicy(every_n=1))
    assert out.is_dir()


def test_write_error_returns_none_and_sink_keeps_working(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = SaveSink(tmp_path, SavePolicy(every_n=1))
    blocked = frame(seq=1, capture_ns=T0 + S)
    (tmp_path / file_name(blocked)).mkdir()  # the rename onto it fails
    with caplog.at_level(logging.WARNING, logger="worker_node.save"):
        assert sink.offer(blocked) is None
    assert "cannot save" in caplog.text
    assert sink.count == 0
    assert no_tmp_files(tmp_path)
    assert listing(tmp_path) == [file_name(blocked)]
    assert not any((tmp_path / file_name(blocked)).iterdir())

    after = sink.offer(frame(seq=2, capture_ns=T0 + 2 * S))
    assert after is not None and after.read_bytes() == JPEG
    assert sink.count == 1
    assert no_tmp_files(tmp_path)


@pytest.fixture
def small_tmpfs(tmpfs: Callable[[str], Path]) -> Path:
    """A 64 KiB file system: a real ENOSPC."""
    return tmpfs("64k")


def test_disk_full_returns_none_and_recovers(small_tmpfs: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = small_tmpfs / "saved"
    sink = SaveSink(out, SavePolicy(every_n=1))
    jpeg = make_jpeg(1, size=160)  # noise: ~19 KB, so a few fill 64 KiB
    assert len(jpeg) > 8192
    results = []
    with caplog.at_level(logging.WARNING, logger="worker_node.save"):
        for s in range(20):
            result = sink.offer(frame(seq=s, capture_ns=T0 + s * S, jpeg=jpeg))
            results.append(result)
            if result is None:
                break
    assert results[-1] is None, "the file system never filled up"
    assert len(results) > 1
    assert "the disk is full" in caplog.text
    written = [p for p in results if p is not None]
    assert listing(out) == [p.name for p in written]
    assert all(p.read_bytes() == jpeg for p in written)
    assert no_tmp_files(small_tmpfs)
    assert sink.count == len(written)

    for p in written:
        p.unlink()
    again = sink.offer(frame(seq=100, capture_ns=T0 + 100 * S, jpeg=jpeg))
    assert again is not None and again.read_bytes() == jpeg
    assert listing(out) == [again.name]
    assert no_tmp_files(small_tmpfs)


def test_retention_frees_space_on_a_small_disk(small_tmpfs: Path) -> None:
    out = small_tmpfs / "saved"
    jpeg = make_jpeg(1, size=160)
    sink = SaveSink(out, SavePolicy(every_n=1, keep_files=1))
    for s in range(10):
        path = sink.offer(frame(seq=s, capture_ns=T0 + s * S, jpeg=jpeg))
        assert path is not None
    assert listing(out) == [path.name]


# ----------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    "policy",
    [SavePolicy(), SavePolicy(every_n=10, every_s=1.0), SavePolicy(every_n=-1), SavePolicy(every_s=-0.5)],
)
def test_exactly_one_of_every_n_and_every_s(tmp_path: Path, policy: SavePolicy) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SaveSink(tmp_path / "out", policy)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_closed_terminal_stops_the_save_worker_cleanly(nodes: Processes, tmp_path: Path, sig: int) -> None:
    """SIGHUP (the terminal it ran in closed) stops a worker like SIGTERM: it says what it saved
    and exits 0, instead of dying on the spot."""
    _, control = nodes.capture("--width", "160", "--height", "120", "--fps", "10")
    worker = nodes.worker("save", "--node", control, "--out", str(tmp_path), "--every-n", "1")
    worker.wait_for(r"camera cam1: subscribed", 30)
    wait_until(lambda: list(tmp_path.glob("*.jpg")), 30, "a saved file")
    worker.stop(sig, timeout=10)
    assert worker.proc.returncode == 0, worker.output
    assert re.search(r"INFO worker_node: saved \d+ files to ", worker.output), worker.output
