from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import Processes


@pytest.fixture
def nodes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.cleanup()
