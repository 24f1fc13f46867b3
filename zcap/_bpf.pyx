# cython: language_level=3
"""Classic BPF: the userspace engine (placeholder until implemented)."""
