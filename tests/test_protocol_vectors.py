"""The conformance vectors of docs/protocol-vectors/: each one gets the verdict its manifest
gives from the reference decoder (common/protocol.py), the committed files are the ones
make_vectors.py writes, and every kind has vectors it must accept and vectors it must refuse."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import zmq

from framebus.common.protocol import DescribeReply, Kind, ProtocolError, decode
from framebus.worker_node.discovery import describe
from tests.support.processes import ROOT, Processes

VECTORS = ROOT / "docs" / "protocol-vectors"
SPEC = ROOT / "docs" / "protocol.md"
# What section 1.4 has a `latest` subscriber set (with CONFLATE, as a script may).
LATEST_SUB_OPTIONS = {
    "CONFLATE",
    "MAXMSGSIZE",
    "HEARTBEAT_IVL",
    "HEARTBEAT_TIMEOUT",
    "HEARTBEAT_TTL",
    "RECONNECT_IVL",
    "RECONNECT_IVL_MAX",
    "LINGER",
    "SUBSCRIBE",
}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


make_vectors = load_generator()
MANIFEST: list[dict[str, Any]] = json.loads((VECTORS / "manifest.json").read_text())["vectors"]


def test_the_committed_vectors_are_the_ones_the_generator_writes(tmp_path: Path) -> None:
    """Each declared verdict is checked against the decoder as it is written (make_vectors.entry)."""
    make_vectors.write(tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in VECTORS.iterdir() if p.suffix in (".bin", ".json"))
    assert committed == written, "run: python docs/protocol-vectors/make_vectors.py"
    changed = [name for name in written if (tmp_path / name).read_bytes() != (VECTORS / name).read_bytes()]
    assert not changed, f"stale vectors {changed[:5]}: run python docs/protocol-vectors/make_vectors.py"


@pytest.mark.parametrize("item", MANIFEST, ids=[item["file"] for item in MANIFEST])
def test_each_vector_gets_its_verdict_from_the_reference_decoder(item: dict[str, Any]) -> None:
    message = (VECTORS / item["file"]).read_bytes()
    assert hashlib.sha256(message).hexdigest() == item["sha256"]
    if item["expect"] == "invalid":
        with pytest.raises(ProtocolError) as refused:
            decode(message)
        assert str(refused.value) == item["error"]
        return
    decoded = decode(message)
    assert json.loads(json.dumps(make_vectors.decoded_json(decoded, message))) == item["decoded"]
    ignored = decoded.ignored if isinstance(decoded, DescribeReply) else ()
    assert len(ignored) == len(item.get("ignored", []))


def test_every_kind_has_vectors_to_accept_and_to_refuse() -> None:
    seen = {
        (Kind(message[3]), item["expect"])
        for item in MANIFEST
        if len(message := read(item)) >= 8 and message[3] in Kind._value2member_map_
    }
    assert seen == {(kind, expect) for kind in Kind for expect in ("valid", "invalid")}


def test_the_spec_counts_the_vectors_as_they_are() -> None:
    said = re.search(r"holds (\d+) messages.*?: (\d+) to\s+accept, (\d+) to refuse", SPEC.read_text(), re.S)
    assert said, "section 11 no longer counts the vectors"
    valid = sum(item["expect"] == "valid" for item in MANIFEST)
    assert tuple(map(int, said.groups())) == (len(MANIFEST), valid, len(MANIFEST) - valid)


def read(item: dict[str, Any]) -> bytes:
    return (VECTORS / item["file"]).read_bytes()


def test_the_worked_examples_of_the_spec_are_vectors() -> None:
    """Section 8's hex dump and section 3.3's nine bytes, as the spec prints them."""
    text = SPEC.read_text()
    dump = b"".join(
        bytes.fromhex(row.replace(" ", "")) for row in re.findall(r"^[0-9a-f]{4}  ((?:[0-9a-f]{2} )+) ", text, re.M)
    )
    assert dump == (VECTORS / "frame-spec-example.bin").read_bytes()
    request = re.search(r"^46 42 01 03 01 00 00 00 80$", text, re.M)
    assert (
        request and bytes.fromhex(request.group(0).replace(" ", "")) == (VECTORS / "describe-request.bin").read_bytes()
    )


def test_the_reference_subscriber_of_section_9_reads_a_capture_node(nodes: Processes, tmp_path: Path) -> None:
    """The spec's subscriber, as printed, with every option of 1.4 set, against a real node."""
    code = re.search(r"## 9\. Reference subscriber.*?```python\n(.*?)```", SPEC.read_text(), re.S)
    assert code, "section 9 has no python block"
    options = set(re.findall(r"setsockopt\(zmq\.(\w+)", code.group(1)))
    assert options >= LATEST_SUB_OPTIONS, f"section 9 leaves out {LATEST_SUB_OPTIONS - options}"
    script = tmp_path / "subscriber.py"
    script.write_text(code.group(1))
    _, control = nodes.capture("--fps", "20")
    ctx = zmq.Context()
    try:
        endpoint = describe(ctx, control, timeout=15).cameras[0].endpoint
    finally:
        ctx.destroy(0)
    subscriber = nodes.start(str(script), [endpoint, "3"])
    assert subscriber.wait_exit(30) == 0, subscriber.output
    frames = re.findall(r"^cam1 #(\d+) (\d+)x(\d+) \d+ B jpeg=True age=[\d.]+ ms$", subscriber.output, re.M)
    assert len(frames) == 3, subscriber.output
    assert "Traceback" not in subscriber.output
