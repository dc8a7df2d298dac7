"""Benchmarks that drive the real switch process with real peers (see bench/README.md)."""
