"""framebus worker node: subscribe to capture nodes; save, display or process frames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framebus.worker_node.remote_capture import RemoteCapture

__all__ = ["RemoteCapture"]


def __getattr__(name: str) -> Any:
    """RemoteCapture on first use: `python -m framebus.worker_node` and `worker-node` import this package
    before they can install their signal handlers, and OpenCV takes ~0.5 s to load."""
    if name == "RemoteCapture":
        from framebus.worker_node.remote_capture import RemoteCapture

        return RemoteCapture
    raise AttributeError(f"module 'worker_node' has no attribute {name!r}")
