"""Conformance vectors for docs/protocol.md: one file of message bytes per case, and
manifest.json saying for each whether a receiver must accept it (and what it decodes to) or
reject it (and why). Written from the table of cases in vector_cases.py, each verdict checked
against the reference decoder (common.protocol.decode) on the way out:

    python docs/protocol-vectors/make_vectors.py [DIRECTORY]    # default: next to this file

tests/test_protocol_vectors.py checks that the committed vectors are the ones this writes.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:  # vector_cases.py, beside this file
    sys.path.insert(0, str(HERE))

from vector_cases import Vector, vectors  # noqa: E402

from framebus.common.protocol import (  # noqa: E402
    DescribeReply,
    DescribeRequest,
    Frame,
    Message,
    ProtocolError,
    PullRequest,
    Status,
    decode,
)

MANIFEST = "manifest.json"


def as_json(value: Any) -> Any:
    """A decoded msgpack value as JSON: bin as {"bin": hex}, extensions as {"ext": [type, hex]}."""
    if isinstance(value, dict):
        return {str(k) if isinstance(k, str) else f"bin:{bytes(k).hex()}": as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bin": bytes(value).hex()}
    if isinstance(value, msgpack.ExtType):
        return {"ext": [value.code, value.data.hex()]}
    if isinstance(value, msgpack.Timestamp):
        return {"timestamp": [value.seconds, value.nanoseconds]}
    return value


def decoded_json(message: Message, whole: bytes) -> dict[str, Any]:
    """What a receiver must make of a valid vector (the JPEG as where it sits in the message)."""

    def frame_json(f: Frame) -> dict[str, Any]:
        h = f.header
        fields = {
            k: getattr(h, k) for k in ("camera", "seq", "capture_ns", "publish_ns", "width", "height", "encoding")
        }
        start = len(whole) - len(f.jpeg)
        return {**fields, "meta": as_json(dict(h.meta)), "jpeg": {"offset": start, "length": len(f.jpeg)}}

    if isinstance(message, Frame):
        return {"kind": "FRAME", **frame_json(message)}
    if isinstance(message, Status):
        names = ("camera", "state", "publish_ns", "last_seq", "reason", "attempt", "retry_in_s")
        fields = {k: getattr(message, k) for k in names}
        return {"kind": "STATUS", **fields, "frame": frame_json(message.frame) if message.frame else None}
    if isinstance(message, DescribeRequest):
        return {"kind": "DESCRIBE_REQUEST"}
    if isinstance(message, PullRequest):
        result = None
        if message.result is not None:
            r = message.result
            jpeg = None if r.jpeg is None else {"offset": len(whole) - len(r.jpeg), "length": len(r.jpeg)}
            width, height = r.size if r.size is not None else (None, None)
            result = {"seq": r.seq, "meta": as_json(dict(r.meta)), "width": width, "height": height, "jpeg": jpeg}
        member = {"member": message.member} if message.member else {}  # older vectors' entries unchanged
        return {
            "kind": "PULL_REQUEST",
            "after_seq": message.after_seq,
            "pool": message.pool,
            "result": result,
            **member,
        }
    assert isinstance(message, DescribeReply)
    cameras = [dict(vars(c)) for c in message.cameras]
    return {"kind": "DESCRIBE_REPLY", "node": message.node, "time_ns": message.time_ns, "cameras": cameras}


def entry(vector: Vector) -> dict[str, Any]:
    """The manifest entry of a vector, after checking its declared verdict against the reference
    decoder: raises AssertionError when they disagree."""
    item: dict[str, Any] = {
        "file": f"{vector.name}.bin",
        "sha256": hashlib.sha256(vector.message).hexdigest(),
        "expect": "valid" if vector.valid else "invalid",
        "section": vector.section,
        "about": vector.about,
    }
    try:
        message = decode(vector.message)
    except ProtocolError as exc:
        assert not vector.valid, f"{vector.name}: declared valid, the reference decoder says: {exc}"
        assert re.search(vector.match, str(exc)), f"{vector.name}: expected /{vector.match}/, got: {exc}"
        item["error"] = str(exc)
        return item
    assert vector.valid, f"{vector.name}: declared invalid (/{vector.match}/), the reference decoder accepts it"
    ignored = message.ignored if isinstance(message, DescribeReply) else ()
    assert len(ignored) == len(vector.ignored), f"{vector.name}: ignored {ignored}, expected {vector.ignored}"
    for path, problem in zip(vector.ignored, ignored, strict=True):
        index, field = re.fullmatch(r"cameras\[(\d+)\]\.(\w+)", path).groups()  # type: ignore[union-attr]
        assert f"cameras[{index}]" in problem and field in problem, f"{vector.name}: {problem} is not about {path}"
    item["decoded"] = decoded_json(message, vector.message)
    if vector.ignored:
        item["ignored"] = list(vector.ignored)
    return item


def write(directory: Path) -> int:
    """Write every vector and the manifest into `directory` (old .bin files there go)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.bin"):
        old.unlink()
    items = []
    for vector in vectors():
        items.append(entry(vector))
        (directory / f"{vector.name}.bin").write_bytes(vector.message)
    # One vector a line: the file stays readable and a change to one vector is a one-line diff.
    lines = ",\n".join(json.dumps(item, ensure_ascii=True, allow_nan=False) for item in items)
    (directory / MANIFEST).write_text(
        '{"protocol": "framebus wire protocol, version 1 (docs/protocol.md)",\n'
        '"generated_by": "docs/protocol-vectors/make_vectors.py",\n'
        f'"vectors": [\n{lines}\n]}}\n'
    )
    return len(items)


def main() -> None:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    print(f"{write(directory)} vectors in {directory}")


if __name__ == "__main__":
    main()
