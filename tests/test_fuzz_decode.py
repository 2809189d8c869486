"""The coverage-guided decode fuzzer (tests/fuzz/fuzz_decode.py, atheris) in CI: a bounded run
over a copy of the kept corpus (tests/fuzz/corpus/decode) that fails on any input breaking the
decoder's contract and names the file holding it. Nothing lands in the checkout: the corpus grows
in a copy, crash files in the test's temporary directory. FRAMEBUS_FUZZ_SECONDS sets the time
(default 60)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from framebus.common.protocol import MAX_HEADER_BYTES, PREFIX
from tests.fuzz import contract, old_decoder
from tests.support.processes import ROOT

TARGET = ROOT / "tests" / "fuzz" / "fuzz_decode.py"
CORPUS = ROOT / "tests" / "fuzz" / "corpus" / "decode"
DICTIONARY = ROOT / "tests" / "fuzz" / "decode.dict"
FUZZ_SECONDS = int(os.environ.get("FRAMEBUS_FUZZ_SECONDS", "60"))
# Two phases: small inputs run ~25 times faster and reach nearly every branch; large ones reach
# the header scan decode() runs only past a kind's budget (8,448 objects for a frame).
PHASES = (("small inputs", 4096, 0.75), ("any size", PREFIX.size + MAX_HEADER_BYTES + 64, 0.25))
DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+) .*exec/s: (\d+)")


def checkout_state() -> tuple[list[str], list[str]]:
    """The kept corpus and any crash files in the checkout: neither may change."""
    stray = [str(p) for p in ROOT.glob("**/crash-*") if not any(part.startswith(".venv") for part in p.parts)]
    return sorted(os.listdir(CORPUS)), stray


def fuzz(
    corpus: Path, artifacts: Path, *flags: str, decoder: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    """Run the fuzzer over a corpus directory; returns the run and the crash files it wrote."""
    env = dict(os.environ)
    if decoder:
        env["FRAMEBUS_FUZZ_DECODER"] = decoder
    run = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            str(corpus),
            f"-artifact_prefix={artifacts}/",
            f"-dict={DICTIONARY}",
            "-timeout=10",  # seconds for one input: decoding is bounded, a slow one is a failure too
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            *flags,
        ],
        cwd=artifacts,  # whatever libFuzzer writes without a prefix lands here too
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # libFuzzer's lines and atheris's traceback, in order
        text=True,
        timeout=FUZZ_SECONDS + 300,
    )
    return run, sorted(artifacts.glob("crash-*")) + sorted(artifacts.glob("timeout-*")) + sorted(
        artifacts.glob("oom-*")
    )


def copies(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the kept corpus to grow, and an empty directory for crash files."""
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    shutil.copytree(CORPUS, corpus)
    artifacts.mkdir()
    return corpus, artifacts


def test_decode_keeps_its_contract_under_coverage_guided_fuzzing(tmp_path: Path) -> None:
    before = checkout_state()
    corpus, artifacts = copies(tmp_path)
    report = [f"fuzzed decode() for {FUZZ_SECONDS} s from {len(before[0])} kept inputs:"]
    for phase, max_len, share in PHASES:
        seconds = max(1, round(FUZZ_SECONDS * share))
        run, crashes = fuzz(corpus, artifacts, f"-max_total_time={seconds}", f"-max_len={max_len}")
        assert run.returncode == 0 and not crashes, (
            f"the fuzzer ({phase}) found inputs that break decode()'s contract: {[str(c) for c in crashes]}\n"
            f"reproduce with: python {TARGET.relative_to(ROOT)} CRASH_FILE\n{run.stdout[-6000:]}"
        )
        done = DONE.search(run.stdout)
        assert done, run.stdout[-3000:]
        runs, cov, features, size, kb, per_second = done.groups()
        report.append(
            f"{phase} (max {max_len} B): {runs} inputs in {seconds} s, {per_second} exec/s, "
            f"coverage {cov} edges / {features} features, corpus {size} inputs ({kb})"
        )
    assert checkout_state() == before, "the fuzzer changed the kept corpus or left crash files in the checkout"
    print("\n" + "\n  ".join(report))


def test_the_fuzzer_finds_the_recursion_bug_of_the_old_decoder(tmp_path: Path) -> None:
    """The same run against decode() as it measured nesting before issue 11 must fail, name the
    crashing input, and still leave the checkout alone."""
    before = checkout_state()
    run, crashes = fuzz(*copies(tmp_path), "-max_total_time=60", decoder="tests.fuzz.old_decoder:decode")
    assert run.returncode != 0, run.stdout[-3000:]
    assert "RecursionError" in run.stdout, run.stdout[-3000:]
    assert len(crashes) == 1 and str(crashes[0]) in run.stdout, (crashes, run.stdout[-3000:])
    assert checkout_state() == before
    contract.check_decode(crashes[0].read_bytes())  # today's decoder keeps its contract on it
    try:
        old_decoder.decode(crashes[0].read_bytes())
    except RecursionError:
        return
    raise AssertionError(f"{crashes[0]} does not make the old decoder recurse too deep")
