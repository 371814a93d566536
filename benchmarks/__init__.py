"""Benchmarks: ``ec-bench`` (latency, throughput, memory, accuracy) and measurement scripts.

Results of this machine class are committed under ``benchmarks/results/`` with their environment.
"""
