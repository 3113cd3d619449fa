"""Perceptual hashes for near-duplicate frames: a difference hash (dHash) of the luma.

A camera that watches an empty yard sends the same picture many times; labelling it twice is
wasted work. dHash compares neighbouring pixels of a small grey thumbnail, so it ignores JPEG
noise, scaling and uniform exposure changes, and moved or new objects flip bits.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

HASH_SIZE = 16  # 16 x 16 = 256 bits
HASH_BITS = HASH_SIZE * HASH_SIZE


def dhash(image: npt.NDArray[np.uint8], size: int = HASH_SIZE) -> int:
    """`image`: BGR uint8 [H, W, 3] or grey [H, W] -> a size*size-bit integer."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    thumbnail = cv2.resize(grey, (size + 1, size), interpolation=cv2.INTER_AREA)
    bits = (thumbnail[:, 1:] > thumbnail[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
