"""Byte counts as people read them, for error messages ("a 2 GiB ring ...")."""

from __future__ import annotations

__all__ = ["human_size"]


def human_size(n: float) -> str:
    """`n` bytes in the largest binary unit below it: "512 bytes", "1 MiB", "1.5 GiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.4g} {unit}"
        n = n / 1024
    raise AssertionError("unreachable")
