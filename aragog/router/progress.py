"""A dependency-free progress bar for training and evaluation (stderr, one line)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self._label = label
        self._total = max(total, 1)
        self._done = 0
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1, note: str = "") -> None:
        self._done = min(self._done + n, self._total)
        now = time.perf_counter()
        if self._enabled and (now - self._last > 0.1 or self._done == self._total):
            self._last = now
            frac = self._done / self._total
            bar = "#" * int(frac * 24)
            self._stream.write(
                f"\r{self._label:<24} [{bar:<24}] {self._done}/{self._total} "
                f"{now - self._start:5.1f}s {note}"
            )
            if self._done == self._total:
                self._stream.write("\n")
            self._stream.flush()
