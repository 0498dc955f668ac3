"""Podium benchmarks: workloads W1-W4 on Podium and on a plain asyncio + sqlite3 floor.

Run with ``make bench`` (``python -m benchmarks.run``); see ``benchmarks/README.md``.
"""
