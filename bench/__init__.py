"""Benchmarks, not tests (`make bench`): throughput, latency, CPU and memory of the real stack.

Each figure is printed with a baseline measured in the same run; results go to bench/RESULTS.md.
"""
