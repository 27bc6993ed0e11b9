"""Benchmarks: each figure measured in the same run as its baseline (see docs/benchmarks.md)."""
