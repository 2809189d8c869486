"""framebus for your own code: read remote cameras like ``cv2.VideoCapture``, run a function on
their newest frames. Import from here, not from the subpackages, whose modules may move.

    from framebus import RemoteCapture, processing

The names load on first use, so that the nodes, which import their own modules through this
package, do not pay for OpenCV and the worker's modules in every camera process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framebus import processing
    from framebus.common.protocol import Frame, FrameHeader
    from framebus.worker_node.remote_capture import RemoteCapture

__all__ = ["Frame", "FrameHeader", "RemoteCapture", "processing"]

_PUBLIC = {  # name -> "module:attribute" (no attribute: the module itself)
    "Frame": "framebus.common.protocol:Frame",
    "FrameHeader": "framebus.common.protocol:FrameHeader",
    "RemoteCapture": "framebus.worker_node.remote_capture:RemoteCapture",
    "processing": "framebus.processing:",
}


def __getattr__(name: str) -> Any:
    where = _PUBLIC.get(name)
    if where is None:
        raise AttributeError(f"module 'framebus' has no attribute {name!r}")
    module_name, _, attribute = where.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
