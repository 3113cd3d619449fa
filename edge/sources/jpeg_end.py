"""Whether a JPEG file is cut short, from its markers.

libjpeg decodes a JPEG whose data stops early (a copy interrupted, a card pulled) without an
error: the part there is, the rest of the frame grey, and a "Premature end of JPEG file" on
stderr that names no file. So an image source checks the file itself: its image data must be
followed by the end-of-image marker (FF D9). In the entropy-coded data a 0xFF byte is always
followed by 0x00 or a restart marker, so the first FF D9 after the first start-of-scan is that
marker; an EXIF thumbnail's own scan and end lie inside an APP1 segment, which is skipped by
its length; and what a phone appends after the end (a Motion Photo's video) is left alone.
"""

from __future__ import annotations

#: Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_START_OF_SCAN = 0xDA
_END_OF_IMAGE = b"\xff\xd9"


def jpeg_cut_short(data: bytes) -> bool:
    """Whether `data` is a JPEG that ends before its end-of-image marker: within its headers,
    or in its image data. False for anything that is not a JPEG, and for a JPEG whose markers
    cannot be followed (damaged: left to the decoder to refuse)."""
    if data[:2] != b"\xff\xd8":
        return False
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return False
        marker = data[index + 1]
        if marker == 0xFF:  # a fill byte before a marker
            index += 1
        elif marker in _STANDALONE:
            index += 2
        elif marker == _START_OF_SCAN:
            return data.find(_END_OF_IMAGE, index) < 0
        else:
            index += 2 + int.from_bytes(data[index + 2:index + 4], "big")
    return True
