"""User handlers for `worker-node process`: loading `pkg.mod:name`, calling, and normalising
what they return.

A handler is called as ``handler(image, header)`` with the newest decoded BGR frame and its
wire header (camera, seq, capture_ns, width, height, meta) and may return:

- ``None``: nothing to report (the source frame is republished as is, for chaining);
- a ``dict``: results, logged and published as the derived frame's metadata;
- a ``numpy.ndarray``: an output frame, published on the derived stream;
- a tuple ``(frame, results)`` with either part ``None``.

If `pkg.mod:name` names a class, one instance is made per camera (a handler with state, like
motion detection, must not mix cameras); anything else callable is used as is.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from framebus.common.fields import MAX_META_DEPTH
from framebus.common.protocol import FrameHeader

Handler = Callable[[np.ndarray, FrameHeader], object]
HandlerFactory = Callable[[], Handler]
MAX_RESULTS_BYTES = 48 * 1024  # the whole frame header must stay under the protocol's 64 KiB


class HandlerError(ValueError):
    """A handler spec that does not load, or a return value that is not one of the accepted shapes."""


@dataclass(frozen=True)
class HandlerOutput:
    image: np.ndarray | None = None
    results: Mapping[str, Any] = field(default_factory=dict)


def load_handler(spec: str) -> HandlerFactory:
    """'package.module:name' -> a factory giving one handler per camera."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerError(f"handler {spec!r} must look like package.module:function")
    if module_name.endswith(".py") or "/" in module_name:
        name = os.path.splitext(os.path.basename(module_name))[0]
        raise HandlerError(
            f"handler {spec!r}: give a module name, not a file: --handler {name}:{attr} "
            "(run from its directory, or add that directory to PYTHONPATH)"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        # As `python -m` does: the `worker-node` script alone would not find ./myhandlers.py.
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerError(f"handler {spec!r}: cannot import {module_name}: {exc}") from None
    except Exception as exc:  # SyntaxError, or anything the module raises while it loads: the user's to fix
        raise HandlerError(f"handler {spec!r}: importing {module_name} failed: {_where(exc)}") from None
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise HandlerError(f"handler {spec!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    return as_factory(target, f"handler {spec!r}")


def _where(exc: BaseException) -> str:
    """`SyntaxError: expected ':' (myh.py, line 1)`: what went wrong and where, in one line."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    place = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{place}"


def as_factory(target: object, name: str = "handler") -> HandlerFactory:
    """A class gives a fresh instance per camera; a function (or callable object) is shared."""
    if isinstance(target, type):
        cls = target

        def make() -> Handler:
            instance = cls()
            if not callable(instance):
                raise HandlerError(f"{name}: instances of {cls.__name__} are not callable (define __call__)")
            _check_arguments(instance, f"{name}: {cls.__name__}.__call__")
            return instance  # type: ignore[no-any-return]

        return make
    if not callable(target):
        raise HandlerError(f"{name} is a {type(target).__name__}, not a function or class")
    _check_arguments(target, name)
    function: Handler = target  # type: ignore[assignment]
    return lambda: function


def _check_arguments(handler: object, name: str) -> None:
    """At start, not as a traceback on every frame: a handler is called as handler(image, header)."""
    try:
        signature = inspect.signature(handler)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return  # no signature to read (some builtins): the first call will tell
    try:
        signature.bind(None, None)
    except TypeError:
        raise HandlerError(f"{name} must take two arguments, (image, header); it takes {signature}") from None


def normalise(value: object) -> HandlerOutput:
    """What a handler returned -> image and results; HandlerError for anything else."""
    if value is None:
        return HandlerOutput()
    if isinstance(value, np.ndarray):
        return HandlerOutput(image=_checked_image(value))
    if isinstance(value, Mapping):
        return HandlerOutput(results=value)
    if isinstance(value, tuple) and len(value) == 2:
        image, results = value
        if image is not None and not isinstance(image, np.ndarray):
            raise HandlerError(
                f"the first item of the returned tuple must be a frame or None, got {type(image).__name__}"
            )
        if results is not None and not isinstance(results, Mapping):
            raise HandlerError(
                f"the second item of the returned tuple must be a dict or None, got {type(results).__name__}"
            )
        return HandlerOutput(_checked_image(image) if image is not None else None, results or {})
    raise HandlerError(f"a handler may return None, a dict, a frame or (frame, dict); got {type(value).__name__}")


def _checked_image(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise HandlerError(
            f"an output frame must be uint8 BGR (h, w, 3) or grey (h, w); got {image.dtype} {image.shape}"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image


def plain(value: object, depth: int = 0) -> object:
    """Results as msgpack-able plain data: NumPy scalars and arrays become numbers and lists.
    Depth is bounded (the wire allows MAX_META_DEPTH levels of metadata): a handler's deeply
    nested or self-referencing results are its error, never a RecursionError of the worker."""
    if depth > MAX_META_DEPTH:
        raise HandlerError(f"results nest deeper than {MAX_META_DEPTH} levels (or contain themselves)")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in value]
    return value


def results_meta(results: Mapping[str, Any]) -> dict[str, Any]:
    """Checked to pack and to fit in a frame header; HandlerError says why not."""
    data = plain(results)
    try:
        packed = msgpack.packb(data, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise HandlerError(f"results cannot be published: {exc}") from None
    if len(packed) > MAX_RESULTS_BYTES:
        raise HandlerError(f"results of {len(packed)} bytes exceed {MAX_RESULTS_BYTES} (publish a summary)")
    return data  # type: ignore[return-value]
