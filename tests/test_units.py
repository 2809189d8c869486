"""common/units.py: durations and sizes as people write them."""

from __future__ import annotations

import pytest

from framebus.common.units import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
        ("10", 10.0),
        ("0.25", 0.25),
        (" 5 s ", 5.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5x", "five", "-5s", "5 m s", "1e3", "5S", "0", "0s", "0ms", "0.0h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500M", 500_000_000),
        ("10G", 10_000_000_000),
        ("2GiB", 2 * 1024**3),
        ("1024", 1024),
        ("4k", 4000),
        ("4KiB", 4096),
        ("64kb", 64_000),
        ("1T", 10**12),
        ("1TiB", 1024**4),
        ("12b", 12),
        ("1.5G", 1_500_000_000),
        ("1.001k", 1001),  # exact decimal arithmetic, not float truncation
        ("1.001M", 1_001_000),
        (" 8 MiB ", 8 * 1024**2),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_is_exact_for_decimal_fractions() -> None:
    for n in range(1, 5000):
        assert parse_size(f"{n / 1000:.3f}k") == n
        assert parse_size(f"{n / 1000:.3f}M") == n * 1000


@pytest.mark.parametrize("text", ["", "M", "ten", "-1", "5X", "5 GB B", "0", "0M", "0.0001k", "1e6"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
