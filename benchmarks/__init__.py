"""Benchmarks: framebus against its peers on one machine, in one run (see docs/benchmarks.md)."""
