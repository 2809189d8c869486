"""The decoder's contract, checked on one input: decode() returns a message or raises
ProtocolError, and nothing else; a ProtocolError with a cause is decode()'s last-resort guard
hiding another exception, which is a bug too. What decodes re-encodes to bytes that decode to an
equal message. Shared by the hypothesis tests (tests/test_protocol.py) and the coverage-guided
fuzzer (tests/fuzz/fuzz_decode.py)."""

from __future__ import annotations

import math
from typing import Any

from framebus.common.protocol import (
    DescribeReply,
    DescribeRequest,
    Frame,
    Message,
    ProtocolError,
    PullRequest,
    Status,
    decode,
    encode_describe_reply,
    encode_describe_request,
    encode_frame,
    encode_pull_request,
    encode_status,
)


class ContractError(AssertionError):
    """decode() broke its contract on an input."""


def encode(message: Message) -> bytes:
    """Any decoded message, back to bytes with the encoder of its kind."""
    if isinstance(message, Frame):
        return encode_frame(message.header, message.jpeg)
    if isinstance(message, Status):
        return encode_status(message)
    if isinstance(message, DescribeRequest):
        return encode_describe_request()
    if isinstance(message, PullRequest):
        return encode_pull_request(message.after_seq, message.pool, message.result)
    return encode_describe_reply(message)


def check_decode(data: bytes | memoryview) -> Message | None:
    """The decoded message, or None for one refused with ProtocolError; ContractError otherwise."""
    try:
        message = decode(data)
    except ProtocolError as exc:
        if exc.__cause__ is not None:
            raise ContractError(f"decode() turned {exc.__cause__!r} into {exc}") from exc.__cause__
        return None
    except Exception as exc:
        raise ContractError(f"decode() raised {type(exc).__name__}, not ProtocolError: {exc}") from exc
    check_round_trip(message)
    return message


def check_round_trip(message: Message) -> None:
    if not isinstance(message, (Frame, Status, DescribeRequest, DescribeReply, PullRequest)):
        raise ContractError(f"decode() returned a {type(message).__name__}")
    try:
        encoded = encode(message)
    except ProtocolError as exc:
        # The encoder writes floats as float64 and every field of a described camera: a header
        # that arrived just under 64 KiB may come out over it. Any other refusal is a bug.
        if "exceeds 65536" not in str(exc):
            raise ContractError(f"a decoded {type(message).__name__} does not re-encode: {exc}") from exc
        return
    try:
        again = decode(encoded)
    except ProtocolError as exc:
        raise ContractError(f"a re-encoded {type(message).__name__} does not decode: {exc}") from exc
    if encode(again) != encoded:
        raise ContractError(f"a {type(message).__name__} changes when decoded and encoded twice")
    if again != message and not _holds_nan(message):  # NaN != NaN: the bytes compared equal above
        raise ContractError(f"a re-encoded {type(message).__name__} decodes to another one:\n{message}\n{again}")


def _holds_nan(message: Message) -> bool:
    """NaN can only be in meta (every float field has a range); walked without recursion."""
    frame = message if isinstance(message, Frame) else message.frame if isinstance(message, Status) else None
    todo: list[Any] = [frame.header.meta] if frame else []
    while todo:
        value = todo.pop()
        if isinstance(value, float) and math.isnan(value):
            return True
        if isinstance(value, dict):
            todo += value.values()
        elif isinstance(value, list):
            todo += value
    return False
