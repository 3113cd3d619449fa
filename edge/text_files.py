"""Text files people hand over (labels, dataset files, annotations), read as their tools save
them: UTF-8 with or without a byte order mark (Windows editors and spreadsheets write one), or
UTF-16 with its mark (Notepad's "Unicode"); anything else is an error that names the file."""

from __future__ import annotations

from pathlib import Path

from edge.errors import InputError

_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def read_text(path: Path, what: str) -> str:
    """The text of `path`, `what` it is named in the error ("label file", "COCO file"...);
    an OSError passes unchanged."""
    data = path.read_bytes()
    try:
        if data[:2] in _UTF16_MARKS:
            return data.decode("utf-16")
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start} is "
                         f"0x{data[exc.start]:02x}: Latin-1 or another encoding, or not a text "
                         "file); save it as UTF-8") from exc
    if "\x00" in text:  # valid UTF-8, but no text file of ours holds a NUL
        raise InputError(f"{what} {path} holds NUL bytes (byte {text.index(chr(0))}): UTF-16 "
                         "without a byte order mark, or not a text file; save it as UTF-8")
    return text
