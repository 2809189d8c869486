"""What is measured, read from /proc: CPU seconds and memory of processes, how busy the machine
was, and summaries of per-frame records (percentiles, windows)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads included (not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_seconds(pid: int) -> float:
    """Time on a CPU of a process's live threads, from the scheduler's own clock
    (/proc/PID/task/*/schedstat, in ns): exact where utime and stime are counted in whole ticks
    of the thread found running, which for a thread woken 60 times a second by frames is a
    sample, not a measure."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:  # a thread that ended: its time is gone with it
            continue
    return total / 1e9


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (a capture node runs each camera in a child process)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def process_name(pid: int) -> str:
    """A short name: the command line without the interpreter's path."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if argv and "python" in os.path.basename(argv[0]):
        argv = argv[1:]
    return " ".join(argv)[:120]


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of a process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class MachineSample:
    busy: float  # jiffies spent not idle, all cores
    total: float

    @staticmethod
    def take() -> MachineSample:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return MachineSample(float(sum(values) - idle), float(sum(values)))

    def busy_percent_since(self, earlier: MachineSample) -> float:
        """How busy all cores were between two samples, 0-100."""
        total = self.total - earlier.total
        return 100.0 * (self.busy - earlier.busy) / total if total > 0 else 0.0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


@dataclass(frozen=True)
class Records:
    """Per delivered frame: the sender's sequence number, capture time and the time the
    consumer had the frame in hand (ns since the epoch, one clock: one machine)."""

    seq: np.ndarray
    capture_ns: np.ndarray
    recv_ns: np.ndarray

    @staticmethod
    def from_json(data: dict[str, list[int]]) -> Records:
        return Records(
            np.asarray(data.get("seq", []), np.int64),
            np.asarray(data.get("capture_ns", []), np.int64),
            np.asarray(data.get("recv_ns", []), np.int64),
        )

    def received_between(self, start_ns: int, end_ns: int) -> Records:
        keep = (self.recv_ns >= start_ns) & (self.recv_ns < end_ns)
        return Records(self.seq[keep], self.capture_ns[keep], self.recv_ns[keep])

    def ages_ms(self) -> np.ndarray:
        return (self.recv_ns - self.capture_ns) / 1e6

    def __len__(self) -> int:
        return len(self.seq)


def merge(records: Iterable[Records]) -> Records:
    parts = list(records)
    if not parts:
        return Records(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return Records(*(np.concatenate([getattr(r, f) for r in parts]) for f in ("seq", "capture_ns", "recv_ns")))


def published_between(capture_ns: Sequence[int] | np.ndarray, start_ns: int, end_ns: int) -> int:
    """Frames captured (and so sent) within a window, from a sender's log of capture times."""
    values = np.asarray(capture_ns, np.int64)
    return int(np.count_nonzero((values >= start_ns) & (values < end_ns)))


def published_from_seq(records: Records, start_ns: int, end_ns: int) -> int:
    """Frames a publisher numbered within a window, from what its (fast) subscribers saw."""
    keep = (records.capture_ns >= start_ns) & (records.capture_ns < end_ns)
    if not np.any(keep):
        return 0
    seq = records.seq[keep]
    return int(seq.max() - seq.min() + 1)


def summary_ms(values: np.ndarray) -> dict[str, float | None]:
    """p50 / p99 / max in ms, rounded; None for no data."""
    if len(values) == 0:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(float(np.percentile(values, 50)), 1),
        "p99": round(float(np.percentile(values, 99)), 1),
        "max": round(float(values.max()), 1),
    }


def age_around(records: Records, first_ns: int, at_s: float, span_s: float = 2.0) -> float | None:
    """Median age (ms) of the frames received in the span_s seconds before at_s after first_ns."""
    end = first_ns + int(at_s * 1e9)
    part = records.received_between(end - int(span_s * 1e9), end)
    return round(float(np.median(part.ages_ms())), 1) if len(part) else None
