"""framebus worker node: subscribe to capture nodes; save, display or process frames."""

from worker_node.remote_capture import RemoteCapture

__all__ = ["RemoteCapture"]
