"""Kept so that scripts written as `from worker_node import processing; processing.run(...)`
go on working: the processing worker lives in worker_node.process, handler loading in
worker_node.handler."""

from __future__ import annotations

from worker_node.process import FrameProcessor, ProcessOptions, run

__all__ = ["FrameProcessor", "ProcessOptions", "run"]
