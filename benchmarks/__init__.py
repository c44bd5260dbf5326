"""Benchmark suite for omestream streaming writers.

Run from the repository root::

    python -m benchmarks [--quick] [--only NAME ...] [--rounds N] [--out FILE]

Every case runs in its own child process (``python -m benchmarks.run_case``)
so memory and library state never leak between cases.  See ``README.md``.
"""
