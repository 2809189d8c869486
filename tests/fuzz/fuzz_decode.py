"""Coverage-guided fuzzing of common.protocol.decode with atheris (libFuzzer for Python):

    python tests/fuzz/fuzz_decode.py CORPUS_DIR [libFuzzer flags, e.g. -max_total_time=60]

Every input must satisfy tests/fuzz/contract.py: a message or ProtocolError, nothing else, and
what decodes round-trips; and its bytes after the prefix must be read alike by msgpack and the
header scan that bounds decode()'s work (tests/fuzz/shape_oracle.py). A failure is written as a crash file (-artifact_prefix says where).
tests/test_fuzz_decode.py runs it for a bounded time over a copy of tests/fuzz/corpus/decode,
with the dictionary tests/fuzz/decode.dict (-dict=); tests/fuzz/seeds.py rebuilds that corpus.
Coverage does not grow with nesting, so the fuzzer does not find deep values by itself (a 300 s
run without the kept deep seeds did not): the corpus keeps them, and the hypothesis tests
generate them. FRAMEBUS_FUZZ_DECODER=module:function fuzzes another
decoder with the same contract (tests/fuzz/old_decoder.py, to check the fuzzer finds old bugs).
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for `common` and `tests`
sys.setrecursionlimit(1000)  # the interpreter's default, whatever the environment set

with atheris.instrument_imports(include=["framebus.common"]):
    import framebus.common.fields  # noqa: F401 - instrumented for coverage
    import framebus.common.msgpack_shape  # noqa: F401
    import framebus.common.protocol
    from tests.fuzz import contract, shape_oracle

if "FRAMEBUS_FUZZ_DECODER" in os.environ:
    module, _, name = os.environ["FRAMEBUS_FUZZ_DECODER"].partition(":")
    contract.decode = getattr(importlib.import_module(module), name)  # type: ignore[attr-defined]


def test_one_input(data: bytes) -> None:
    contract.check_decode(data)
    shape_oracle.check_shape_agrees(data[framebus.common.protocol.PREFIX.size :])  # the header scan, on any bytes


def main() -> None:
    # libFuzzer runs argv[0] through the shell for -merge and -fork: this script with this Python.
    argv = [shlex.join([sys.executable, str(Path(__file__).resolve())]), *sys.argv[1:]]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
