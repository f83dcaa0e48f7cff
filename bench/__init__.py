"""Benchmarks: ``python -m bench.run [--smoke]`` (``make bench``, ``make bench-smoke``).

Each scenario measures one figure of the dashboard next to a raw-MQTT (or framework) baseline
taken in the same run on the same machine, and reports the ratio; see ``docs/benchmarks.md``.
"""
