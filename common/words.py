"""The protocol's closed vocabularies as enums, so that a typo is a type error, not a silent
mismatch. str-valued (not `enum.StrEnum`, which needs Python 3.11): members compare equal to,
format as, and msgpack-encode as their wire strings."""

from __future__ import annotations

from enum import Enum


class _WireWord(str, Enum):  # noqa: UP042 (enum.StrEnum needs Python 3.11)
    def __str__(self) -> str:  # "streaming", not "State.STREAMING", on every Python version
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class State(_WireWord):
    """A camera's state as its capture node reports it (STATUS `state`, describe `state`)."""

    STREAMING = "streaming"
    CONNECTING = "connecting"
    RECONNECTING = "reconnecting"
    SOURCE_ERROR = "source-error"
    ENDED = "ended"
    STOPPED = "stopped"


class Delivery(_WireWord):
    """How a camera's frames reach subscribers (describe `delivery`)."""

    LATEST = "latest"  # conflated PUB: the newest frame only
    EVERY_FRAME = "every-frame"  # back-pressured XPUB: lossless
