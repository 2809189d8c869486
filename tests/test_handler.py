"""Handler loading and what a handler may return (worker_node.handler)."""

from __future__ import annotations

import numpy as np
import pytest

from framebus.common.protocol import FrameHeader
from framebus.worker_node.handler import HandlerError, load_handler, normalise, plain, results_meta

HEADER = FrameHeader("cam1", 7, 1, 2, 4, 3)


def test_a_function_is_shared_and_a_class_gives_one_instance_per_camera() -> None:
    shared = load_handler("tests.support.handlers_for_tests:slow")
    assert shared() is shared()
    per_camera = load_handler("tests.support.handlers_for_tests:FailEveryOther")
    first, second = per_camera(), per_camera()
    assert first is not second
    assert first(np.zeros((3, 4, 3), np.uint8), HEADER) == {"calls": 1}
    assert second(np.zeros((3, 4, 3), np.uint8), HEADER) == {"calls": 1}


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("no_colon", "must look like package.module:function"),
        ("tests.does_not_exist:f", "cannot import tests.does_not_exist"),
        ("tests.support.handlers_for_tests:missing", "has no attribute 'missing'"),
        ("tests.support.handlers_for_tests:WORK_S", "not a function or class"),
    ],
)
def test_bad_specs_are_clear_errors(spec: str, problem: str) -> None:
    with pytest.raises(HandlerError, match=problem):
        load_handler(spec)


def test_return_shapes() -> None:
    frame = np.zeros((3, 4, 3), np.uint8)
    assert normalise(None).image is None and normalise(None).results == {}
    assert normalise({"a": 1}).results == {"a": 1}
    assert normalise(frame).image is frame
    both = normalise((frame, {"n": 2}))
    assert both.image is frame and both.results == {"n": 2}
    assert normalise((None, {"n": 2})).image is None
    assert normalise(np.zeros((3, 4, 1), np.uint8)).image.shape == (3, 4)  # type: ignore[union-attr]
    bad: object
    for bad in ("text", 42, (frame, "x"), ("x", {}), np.zeros((3, 4, 3), np.float32), (frame, {}, 1)):
        with pytest.raises(HandlerError):
            normalise(bad)


def test_results_become_plain_msgpack_data() -> None:
    results = {"count": np.int64(3), "score": np.float32(0.5), "boxes": np.array([[1, 2, 3, 4]]), "ok": True}
    assert plain(results) == {"count": 3, "score": 0.5, "boxes": [[1, 2, 3, 4]], "ok": True}
    assert results_meta(results) == {"count": 3, "score": 0.5, "boxes": [[1, 2, 3, 4]], "ok": True}
    with pytest.raises(HandlerError, match="cannot be published"):
        results_meta({"obj": object()})
    with pytest.raises(HandlerError, match="exceed"):
        results_meta({"big": "x" * 100_000})


def test_results_nested_too_deep_or_holding_themselves_are_a_handler_error() -> None:
    """plain() recursed without bound: 1,000 levels, or a list holding itself, raised
    RecursionError past the worker's HandlerError catch."""
    deep: list[object] = []
    for _ in range(1000):
        deep = [deep]
    looped: list[object] = []
    looped.append(looped)
    for results in ({"deep": deep}, {"loop": looped}):
        with pytest.raises(HandlerError, match="deeper than 16 levels"):
            results_meta(results)
