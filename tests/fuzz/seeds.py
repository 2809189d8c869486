"""Seeds for the decode fuzzer: valid messages of every kind, deep and wide metas at and past
every limit, the hostile cases of the tests and a sample of the rogue node's messages.

    python -m tests.fuzz.seeds            # rebuilds tests/fuzz/corpus/decode

It writes the seeds that must stay (named after what they are) into the corpus, the rest into a
temporary directory, and lets libFuzzer merge from those only what adds coverage (-merge=1), so
the corpus stays small.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack

from framebus.common.fields import MAX_META_DEPTH, MAX_META_KEYS, MAX_META_VALUES
from framebus.common.protocol import (
    MAX_HEADER_OBJECTS,
    CameraInfo,
    DescribeReply,
    Frame,
    FrameHeader,
    Kind,
    PoolResult,
    Status,
    encode_describe_reply,
    encode_describe_request,
    encode_frame,
    encode_pull_request,
    encode_status,
)
from tests import rogue_corpus
from tests.support.wire import JPEG, U64, deep_meta_frame, frame_dict, frame_with_meta_bytes, nested, raw, status_dict
from tests.test_protocol import HOSTILE, valid_messages

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus" / "decode"
SMALL_JPEG = b"\xff\xd8\xff\xd9"


def kept() -> dict[str, bytes]:
    """The seeds that stay in the corpus whatever their coverage: each limit, on both sides."""
    seeds: dict[str, bytes] = {}
    for container in ("list", "map"):
        for levels in (MAX_META_DEPTH, MAX_META_DEPTH + 1, 500, 1023, 1024):
            seeds[f"meta-{container}-{levels}-deep"] = deep_meta_frame(levels, container, SMALL_JPEG)
    in_status = status_dict(frame=frame_dict())
    header = msgpack.packb(in_status, use_bin_type=True)
    frame_map = msgpack.packb(frame_dict(), use_bin_type=True)
    deep_frame = bytes([frame_map[0] + 1]) + frame_map[1:] + msgpack.packb("meta") + b"\x81\xa1d" + nested(1021, "list")
    seeds["status-frame-meta-1023-deep"] = raw(Kind.STATUS, header.replace(frame_map, deep_frame), SMALL_JPEG)
    seeds["meta-values-at-limit"] = frame_with_meta_bytes(msgpack.packb({"k": [0] * (MAX_META_VALUES - 1)}), SMALL_JPEG)
    seeds["meta-values-over-limit"] = frame_with_meta_bytes(msgpack.packb({"k": [0] * MAX_META_VALUES}), SMALL_JPEG)
    seeds["meta-keys-at-limit"] = raw(
        Kind.FRAME, frame_dict(meta={f"k{i}": i for i in range(MAX_META_KEYS)}), SMALL_JPEG
    )
    seeds["meta-empty-lists-at-limit"] = frame_with_meta_bytes(
        msgpack.packb({"k": [[]] * (MAX_META_VALUES - 1)}), SMALL_JPEG
    )
    budget = MAX_HEADER_OBJECTS[Kind.FRAME]
    seeds["header-objects-over-budget"] = raw(Kind.FRAME, frame_dict(x=[0] * budget), SMALL_JPEG)
    seeds["header-objects-at-budget"] = raw(Kind.FRAME, frame_dict(x=[""] * (budget - 18)), SMALL_JPEG)
    seeds["header-empty-maps-over-budget"] = raw(Kind.FRAME, frame_dict(x=[{}] * (budget + 1)), SMALL_JPEG)
    seeds["header-declares-4g-entries"] = raw(Kind.FRAME, b"\xdf\xff\xff\xff\xff" + b"\xa1k" * 5000, SMALL_JPEG)
    cameras = tuple(
        CameraInfo(f"cam{i}", f"tcp://10.0.0.{i % 250}:{5556 + i}", 1920, 1080, 30.0, "streaming", "latest")
        for i in range(380)
    )
    seeds["describe-reply-380-cameras"] = encode_describe_reply(DescribeReply("node", 1, cameras))
    return seeds


def others(rng: random.Random) -> list[bytes]:
    """Valid messages of every kind and known hostile ones: merged in only for new coverage."""
    header = FrameHeader("site/door.left", U64, 0, U64, 16384, 1, meta={"gain": 1.5, "tags": ["a"], "raw": b"\x00"})
    frame = Frame(header, memoryview(JPEG))
    camera = CameraInfo(
        "door", "tcp://0.0.0.0:5556", 640, 480, 25, "source-error", "every-frame", "401 Unauthorized",
        "tcp://0.0.0.0:6556", 24.5, 3,
    )  # fmt: skip
    messages = [
        *valid_messages(),
        encode_frame(header, JPEG),
        encode_status(Status("site/door.left", "reconnecting", 5, 4, "gone", 7, 86400.0, frame)),
        encode_status(Status("door", "ended", 5)),
        encode_describe_request(),
        encode_pull_request(-1),
        encode_pull_request(U64),
        encode_pull_request(7, "faces", PoolResult(7, {"results": {"boxes": [[1, 2, 3, 4]]}}, (8, 8), JPEG)),
        encode_describe_reply(DescribeReply("n", 0, (camera,))),
        raw(Kind.FRAME, frame_dict(meta={"f32": msgpack.ExtType(1, b"x"), "nan": float("nan")}), JPEG),
        raw(Kind.FRAME, frame_dict(meta={"t": msgpack.Timestamp(1, 2)}), JPEG),
        *(message for _, message, _ in HOSTILE),
    ]
    generator = rogue_corpus.Generator(rng, "rogue", "real")
    messages += [generator.message(i) for i in range(380)]
    messages += rogue_corpus.malformed_replies(rng)
    return [m for m in messages if len(m) <= 70_000]


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, message in kept().items():
        (CORPUS / name).write_bytes(message)
    with tempfile.TemporaryDirectory() as scratch:
        for message in others(random.Random(11)):
            (Path(scratch) / hashlib.sha1(message).hexdigest()).write_bytes(message)
        target = ROOT / "tests" / "fuzz" / "fuzz_decode.py"
        subprocess.run(
            [sys.executable, str(target), "-merge=1", f"-artifact_prefix={scratch}/", str(CORPUS), scratch], check=True
        )
    print(f"{len(list(CORPUS.iterdir()))} files in {CORPUS}")


if __name__ == "__main__":
    main()
