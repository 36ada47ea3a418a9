"""Benchmarks: dltrain against hand-written PyTorch on the same work, in the same process."""
