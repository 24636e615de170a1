"""A dependency-free PNG bar chart (no matplotlib in the environment).

Bars only, no text: the markdown written next to it carries the numbers and the legend.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

PALETTE = (
    (90, 90, 90),
    (31, 119, 180),
    (255, 127, 14),
    (148, 103, 189),
    (44, 160, 44),
    (152, 223, 138),
    (214, 39, 40),
)


def bar_chart(
    panels: Sequence[Sequence[Sequence[float]]], path: str | Path, height: int = 160
) -> None:
    """``panels[row][group][bar]`` values in [0, 1]: one row of groups per panel, bars
    coloured by index (``PALETTE``), a grey baseline under each row."""
    bar_w, gap, pad = 10, 14, 10
    n_groups = max(len(p) for p in panels)
    n_bars = max(len(g) for p in panels for g in p)
    width = pad * 2 + n_groups * (n_bars * bar_w + gap)
    img = np.full((len(panels) * (height + pad) + pad, width, 3), 255, np.uint8)
    for r, panel in enumerate(panels):
        base = pad + r * (height + pad) + height
        img[base, pad : width - pad] = (160, 160, 160)
        for g, group in enumerate(panel):
            x0 = pad + g * (n_bars * bar_w + gap)
            for b, v in enumerate(group):
                h = round(max(0.0, min(1.0, v)) * (height - 4))
                x = x0 + b * bar_w
                img[base - h : base, x + 1 : x + bar_w - 1] = PALETTE[b % len(PALETTE)]
    write_png(img, path)


def write_png(img: NDArray[np.uint8], path: str | Path) -> None:
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
    Path(path).write_bytes(png + chunk(b"IEND", b""))
