"""Benchmarks: each prints its figures and the machine, and ends with a `RESULT ...` line."""
