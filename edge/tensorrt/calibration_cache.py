"""TensorRT calibration caches (the legacy implicit-quantization path, TensorRT 8.5-10.x).

The device reads these files, so the format lives in `edge` (the package layers point one way:
`edge` <- `calibration` <- `converters`, import-linter's contracts in pyproject.toml).

Format: a header line `TRT-<version>-EntropyCalibration2`, then one `name: <hex>` line per
tensor, the hex being the big-endian IEEE-754 float32 bit pattern of scale = amax / 127.
TensorRT writes the hex without leading zeros, so readers accept fewer than 8 digits.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from edge.errors import InputError
from edge.files import write_bytes_atomic

HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
#: A TensorRT version as its releases name it: major.minor[.patch], perhaps with the build
#: and, as `dpkg -l tensorrt` shows it, the package's revision (10.3.0.30-1+cuda12.5).
VERSION = re.compile(r"(\d{1,2})\.(\d{1,2})(?:\.(\d{1,2})(?:\.\d+)?)?(?:-[0-9A-Za-z.+~]+)?")
#: A scale's bits as TensorRT writes them: hex digits, no prefix, leading zeros dropped.
SCALE_HEX = re.compile(r"[0-9a-fA-F]{1,8}")
ALGORITHM = "EntropyCalibration2"
#: What an editor saving "UTF-8 with BOM" puts first.
BOM = "\ufeff"
#: float32's smallest normal number: a scale below it is flushed to zero on the GPU ...
FLOAT32_TINY = 2.0**-126
#: ... and one above this puts the tensor's range (scale x 127) beyond float32.
LARGEST_SCALE = (2.0 - 2.0**-23) * 2.0**127 / 127.0
#: The smallest range (scale x 127) `edge calibrate` writes: a tensor zero on every frame gets
#: it. A hand-edited scale under it is most likely a lost hex digit.
SMALLEST_AMAX = 1e-8
#: The calibrators whose caches TensorRT writes and reads (`IInt8Calibrator`'s kinds).
ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration",
              "LegacyCalibration")


def trt_version_number(version: str) -> int:
    """'8.6.1' -> 8601 (M*1000+m*100+p); '10.3.0' -> 100300 (M*10000+m*100+p); a build number
    after the patch ('10.3.0.30') and a package revision ('10.3.0.30-1+cuda12.5', as dpkg
    shows it: a user check found it refused by the message that names dpkg) are left out.
    Raises InputError for what is no TensorRT version edge writes caches for (a user check:
    `10` wrote a cache for 10.0.0, `8.10.0` one headed 9.0.0, `10.-3.0` one headed
    99.7.0)."""
    matched = VERSION.fullmatch(version.strip())
    if matched is None:
        raise InputError(f"TensorRT version {version!r} is not like 10.3.0 (major.minor.patch, "
                         "as `dpkg -l tensorrt` or `python -c 'import tensorrt; "
                         "print(tensorrt.__version__)'` on the device names it)")
    major, minor, patch = (int(part or 0) for part in matched.groups())
    if major < 10 and minor > 9:
        raise InputError(f"TensorRT {version} does not exist (8.x and 9.x minor versions run "
                         "0 to 9); give the device's version, such as 8.6.1")
    if major >= 11:
        raise InputError(f"TensorRT {version} builds strongly typed networks only and reads no "
                         "calibration cache; give it the QDQ model that `edge calibrate "
                         "--profile tensorrt` writes (-o) and leave out the cache")
    if major < 8 or (major == 8 and minor < 5):
        raise InputError(f"TensorRT {version} is older than 8.5, which edge does not support")
    return major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch


def trt_version_text(number: int) -> str:
    """8601 -> '8.6.1'; 100300 -> '10.3.0' (`trt_version_number` backwards)."""
    if number >= 100000:
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return f"{number // 1000}.{number // 100 % 10}.{number % 100}"


def looks_like_cache(path: Path) -> bool:
    """Whether `path` starts with a TensorRT calibration cache's header line."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(200)
    except OSError:
        return False
    return first.removeprefix(BOM.encode()).startswith(b"TRT-")


def scale_to_hex(scale: float) -> str:
    return format(struct.unpack(">I", struct.pack(">f", scale))[0], "x")


def hex_to_scale(text: str) -> float:
    """A float32 scale from the 8 hex digits of its bits, as TensorRT writes it; ValueError
    saying what is wrong otherwise."""
    if SCALE_HEX.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not a scale's hex digits (up to 8, such as 3c010204)")
    return float(struct.unpack(">f", struct.pack(">I", int(text, 16)))[0])


def usable_scale(scale: float) -> float:
    """`scale`, where TensorRT can quantize with it; else ValueError saying why (a user check:
    zero, subnormal and huge scales in a hand-edited cache were read as written, and TensorRT
    divides by the scale)."""
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale {scale} is not a finite non-negative number")
    if scale == 0.0:
        raise ValueError("scale 0: TensorRT divides by a tensor's scale, and an engine build "
                         "fails on it (edge calibrate gives a tensor that is zero on every "
                         "calibration frame the smallest scale instead)")
    if scale < FLOAT32_TINY:
        raise ValueError(f"scale {scale:.3g} is below float32's normal range: the GPU reads it "
                         "as 0")
    if scale > LARGEST_SCALE:
        raise ValueError(f"scale {scale:.3g} puts the tensor's range (scale x 127) beyond "
                         "float32")
    return scale


def _check_version(number: int, origin: str) -> None:
    """A cache's header names a TensorRT that reads calibration caches (8.5 to 10.x); else
    InputError (a user check: `TRT-7-...` read as TensorRT 0.0.7, `TRT-110000-...` as 11.0.0
    and then said to be read by build-engine)."""
    text = trt_version_text(number)
    try:
        trt_version_number(text)
    except InputError as exc:
        raise InputError(f"{origin}: line 1 names TensorRT version number {number} ({text}): "
                         f"{exc}") from None


@dataclass(frozen=True)
class CalibrationCache:
    version: int
    algorithm: str
    scales: dict[str, float]

    @classmethod
    def from_scales(cls, scales: dict[str, float], trt_version: str,
                    input_scale: tuple[str, float] | None = None) -> CalibrationCache:
        """`scales`: amax / 127 per tensor. `input_scale`: the network input's scale, e.g. 1.0
        for a uint8 image (values 0..255 -> amax 127 would clip, so TensorRT wants the real
        range)."""
        if input_scale is not None:
            scales = {input_scale[0]: input_scale[1], **scales}
        return cls(trt_version_number(trt_version), ALGORITHM, scales)

    def to_text(self) -> str:
        lines = [f"TRT-{self.version}-{self.algorithm}"]
        lines += [f"{name}: {scale_to_hex(scale)}" for name, scale in self.scales.items()]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        write_bytes_atomic(path, self.to_text().encode())

    @classmethod
    def parse(cls, text: str, origin: str, expected_version: int | None = None
              ) -> CalibrationCache:
        if text.startswith(BOM):
            raise InputError(f"{origin} starts with a byte order mark (an editor saved it as "
                             "UTF-8 with BOM): TensorRT reads line 1 byte for byte as its "
                             "header; save it as plain UTF-8, or write it again with `edge "
                             "calibrate --cache`")
        lines = text.splitlines()
        if not lines or not (header := HEADER.match(lines[0].strip())):
            raise InputError(f"{origin}: line 1 is not a TensorRT cache header like "
                             f"TRT-100300-{ALGORITHM}")
        version, algorithm = int(header.group(1)), header.group(2)
        if algorithm not in ALGORITHMS:
            raise InputError(f"{origin}: line 1 names the calibrator {algorithm}, which TensorRT "
                             f"does not have ({', '.join(ALGORITHMS)})")
        if not text.endswith("\n"):
            raise InputError(f"{origin} ends in the middle of a line: the file is cut short; "
                             "copy it again in full, or recalibrate with `edge calibrate --cache`")
        _check_version(version, origin)
        if expected_version is not None and version != expected_version:
            raise InputError(f"{origin}: the cache was written for TensorRT version number "
                             f"{version}, not {expected_version}; recalibrate with "
                             "`edge calibrate --cache` for this TensorRT")
        scales: dict[str, float] = {}
        first_line: dict[str, int] = {}
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            name, separator, value = line.rpartition(":")
            try:
                if not separator or not name.strip():
                    raise ValueError("expected 'name: hex'")
                scale = usable_scale(hex_to_scale(value.strip()))
                if name.strip() in scales:  # which would TensorRT take? neither, to be safe
                    raise ValueError(f"{name.strip()} is scaled on line "
                                     f"{first_line[name.strip()]} too")
                scales[name.strip()] = scale
                first_line[name.strip()] = number
            except ValueError as exc:
                raise InputError(f"{origin}: line {number} is malformed ({exc}): "
                                 f"{line[:80]!r}; write the cache again with `edge calibrate "
                                 "--cache`") from exc
        if not scales:
            raise InputError(f"{origin} holds a header and no tensor scales; recalibrate with "
                             "`edge calibrate --cache`")
        return cls(version, algorithm, scales)

    @classmethod
    def read(cls, path: Path, expected_version: int | None = None) -> CalibrationCache:
        try:
            text = path.read_bytes().decode()
        except UnicodeDecodeError:
            raise InputError(f"{path} is not a TensorRT calibration cache: it holds binary data "
                             "(a model, an engine?), and a cache is text; `edge calibrate "
                             "--profile tensorrt --cache FILE` writes one") from None
        except OSError as exc:
            raise InputError(f"cannot read calibration cache {path}: {exc}") from exc
        return cls.parse(text, str(path), expected_version)
