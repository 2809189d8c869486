"""Run `worker-node` with one function made to raise, for the tests of what a worker does when
its own code fails (tests/test_worker_threads.py): a bug cannot be provoked from outside once it
is fixed, and the handling of the next one must still be tested.

    python tests/support/inject_fault.py MODULE:ATTRIBUTE AFTER -- WORKER-NODE ARGUMENTS...

The attribute (a function or method, e.g. framebus.worker_node.receiver:FrameReceiver.poll) works AFTER
times, then raises RuntimeError("injected fault") on every call.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def inject(target: str, after: int) -> None:
    module_name, _, attribute = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    def faulty(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > after:
            raise RuntimeError("injected fault")
        return original(*args, **kwargs)

    setattr(owner, name, faulty)


def main() -> int:
    target, after, separator, *args = sys.argv[1:]
    assert separator == "--", __doc__
    inject(target, int(after))
    from framebus.worker_node.cli import main as worker_main

    return worker_main(args)


if __name__ == "__main__":
    sys.exit(main())
