"""A labelling dataset on disk, built one sampled frame at a time, resumable and bounded.

    out/images/<device>_<camera>_<frame_id>.jpg   clean pixels (no boxes drawn)
    out/labels/<same stem>.txt                   YOLO: class cx cy w h (pre-annotations)
    out/classes.txt, out/data.yaml               the layout `edge eval --data out` reads
    out/manifest.jsonl                           one row per image: the source of truth
    out/manifest.csv                             the same rows for spreadsheets
    out/annotations.coco.json                    COCO (pycocotools loads it), scores kept
    out/label-studio.json                        Label Studio import (tasks with predictions)

Order of writes per image: image and label under hidden `.<name>.partial` names, the manifest
row (flushed and fsynced), then both renamed to their names. A crash or a full disk leaves at
worst partial files, which resuming deletes, or a row whose image was never renamed, which
resuming drops, so what the manifest lists is always complete. The exports are rewritten
atomically from the manifest with the first image, every `EXPORT_EVERY` images or
`EXPORT_INTERVAL_S` seconds, and at the end, so they are never half-written.

The folder is edge collect's: a new or empty one, or one with the `manifest.jsonl` an earlier
run wrote first (and is resumed). A folder that holds anything else is refused before anything
is written, and files in `images/` that the manifest does not list are never deleted.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import logging
import math
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.collect.manifest import MANIFEST, manifest_rows
from edge.collect.phash import dhash, hamming
from edge.errors import InputError
from edge.files import write_bytes_atomic
from edge.wording import counted, listed

log = logging.getLogger(__name__)

EXPORT_EVERY = 50
#: ... or once this many seconds passed with new images (a labeller opening the folder of a
#: slow camera, 6 samples a minute, saw no export for 8 minutes).
EXPORT_INTERVAL_S = 30.0
#: Files rewritten from the manifest by `export`, in the order it writes them.
EXPORTS = ("annotations.coco.json", "label-studio.json", "manifest.csv", "data.yaml")
#: What an image or label is written as until its manifest row is on disk.
PARTIAL = ".partial"
#: Label Studio's local-files URL, the folder its document root.
LOCAL_FILES = "/data/local-files/?d="
#: Held (a POSIX lock) by the run writing into the folder, with its process id inside.
LOCK = ".edge-collect.lock"
#: Near-duplicates are looked for among this many recent images of the same camera.
RECENT = 256
MANIFEST_FIELDS = ("id", "file", "device", "camera", "frame_id", "time", "ts", "model",
                   "reasons", "width", "height", "objects")


class DiskFullError(InputError):
    """The output folder ran out of room (or of its allowance); what was written is kept."""


@dataclass(frozen=True)
class Sample:
    """One sampled frame as received: the clean JPEG and its `frame/meta`."""

    device: str
    camera: str
    jpeg: bytes
    meta: dict[str, Any]


@dataclass
class CollectCounts:
    written: int = 0
    resumed: int = 0
    duplicates: int = 0
    other_labels: int = 0
    undecodable: int = 0
    bytes: int = 0


@dataclass
class CollectedDataset:
    """The dataset folder; `add` one sample at a time from one thread."""

    root: Path
    max_bytes: int | None = None
    min_free_bytes: int = 0
    duplicate_distance: int = 6  # of 256 bits; < 0 keeps every frame
    #: Label Studio: prefix + images/<name>.jpg; None: as the folder's label-studio.json has
    #: it (a resumed run keeps the prefix an earlier one was given), else LOCAL_FILES
    image_url_prefix: str | None = None
    counts: CollectCounts = field(default_factory=CollectCounts)

    def __post_init__(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"--out {self.root} is a file; choose a folder")
        _refuse_a_folder_of_others(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_against_other_writers(self.root)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        """Make the folder's layout and resume what it holds."""
        for folder in (self.root / "images", self.root / "labels"):
            folder.mkdir(parents=True, exist_ok=True)
        if not (self.root / MANIFEST).exists():  # the folder is marked as ours before any image
            (self.root / MANIFEST).touch()
        self.labels: list[str] | None = None
        self.rows: list[dict[str, Any]] = []
        self._ids: set[str] = set()
        self._recent: dict[tuple[str, str], deque[int]] = {}
        self._since_export = 0  # images added since the last export
        self._exported_at = -math.inf  # time.monotonic() of the last export
        self._removed_by_hand = False  # listed images deleted from images/ (said apart)
        self._resume()
        #: the prefix label-studio.json's image URLs get
        self.url_prefix = self._label_studio_prefix(self.image_url_prefix)
        # a limit reached already (no byte left for an image) is said now, not at a frame
        self._check_room(1)
        texts = self._export_texts() if self.rows else {}
        stale = [name for name, text in texts.items() if not _holds(self.root / name, text)]
        if stale:
            if not self._removed_by_hand:  # whose warning says the exports follow
                log.info("%s: %s did not match %s (a run interrupted between two exports, or "
                         "files edited by hand): rewritten", self.root, listed(stale), MANIFEST)
            self._write_exports(texts)

    def close(self) -> None:
        """Let another run write into the folder (the lock is the process's until then); the
        lock file goes with it (a run killed leaves it, unlocked and harmless)."""
        if self._lock >= 0:
            with contextlib.suppress(OSError):  # unlinked while still locked: see the lock's
                (self.root / LOCK).unlink()
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> CollectedDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resume ----------------------------------------------------------------------------

    def _resume(self) -> None:
        manifest = self.root / MANIFEST
        classes = self.root / "classes.txt"
        labels = classes.read_text().splitlines() if classes.is_file() else None
        if manifest.stat().st_size:
            listed_rows = manifest_rows(manifest, labels)
            self.rows = [row for row in listed_rows if (self.root / row["file"]).is_file()]
            if len(self.rows) < len(listed_rows):
                kept = {row["id"] for row in self.rows}
                self._say_removed_images([row for row in listed_rows if row["id"] not in kept])
            lines = sum(1 for line in manifest.read_text(encoding="utf-8").splitlines()
                        if line.strip())
            if len(self.rows) < lines:  # a torn last line, or rows whose image never landed
                _write_lines(manifest, self.rows)
        if self.rows and labels is not None:
            self.labels = labels
        for folder in (self.root / "images", self.root / "labels"):
            for partial in folder.glob(f".*{PARTIAL}"):  # written before a crash, never listed
                partial.unlink()
        in_manifest = {row["file"] for row in self.rows}
        unlisted = sorted(path.name for path in (self.root / "images").iterdir()
                          if f"images/{path.name}" not in in_manifest)
        if unlisted:
            one = len(unlisted) == 1
            log.warning("%s: %d %s not in %s (%s): left as %s, and the exports list only "
                        "what edge collect wrote", self.root / "images", len(unlisted),
                        "entry is" if one else "entries are", MANIFEST, listed(unlisted, 3),
                        "it is" if one else "they are")
        for row in self.rows:
            self._ids.add(row["id"])
            self._remember(row["device"], row["camera"], int(row["phash"], 16))
            self.counts.bytes += int(row["bytes"])
        self.counts.resumed = len(self.rows)
        if self.rows:
            log.info("resuming %s: %d images already collected", self.root, len(self.rows))

    def _say_removed_images(self, gone: list[dict[str, Any]]) -> None:
        """Warn of the listed images `gone` that were deleted by hand (their label file is
        there; a crash before an image's rename leaves neither): their rows leave the manifest
        and the exports."""
        removed = [row["id"] for row in gone
                   if (self.root / "labels" / f"{row['id']}.txt").is_file()]
        if removed:
            self._removed_by_hand = True
            one = len(removed) == 1
            log.warning("%s: %s gone from images/ (%s): %s dropped from %s and the exports; "
                        "%s in labels/ %s kept (delete %s too if the %s gone for good)",
                        self.root, counted(len(removed), "listed image"), listed(removed, 3),
                        "its row is" if one else "their rows are", MANIFEST,
                        "its label file" if one else "their label files",
                        "is" if one else "are", "it" if one else "them",
                        "image is" if one else "images are")

    def _label_studio_prefix(self, given: str | None) -> str:
        """The image URL prefix of the Label Studio export: `given`, else the one the
        folder's export has (rewriting it with the default would break its imported tasks),
        else LOCAL_FILES."""
        earlier = self._exported_prefix()
        if given is None:
            return LOCAL_FILES if earlier is None else earlier
        if earlier is not None and earlier != given:
            log.info("label-studio.json: image URLs now start with %s (they started with %s)",
                     given, earlier)
        return given

    def _exported_prefix(self) -> str | None:
        """The URL prefix of label-studio.json's first task, or None (no export, or none
        that reads as `edge collect`'s)."""
        if not self.rows:
            return None
        try:
            tasks = json.loads((self.root / "label-studio.json").read_text(encoding="utf-8"))
            image, image_id = tasks[0]["data"]["image"], tasks[0]["data"]["edge_id"]
        except (OSError, ValueError, LookupError, TypeError):
            return None
        file = f"images/{image_id}.jpg"
        if not isinstance(image, str) or not image.endswith(file):
            return None
        return image[:-len(file)]

    def _remember(self, device: str, camera: str, phash: int) -> None:
        self._recent.setdefault((device, camera), deque(maxlen=RECENT)).append(phash)

    # -- adding ----------------------------------------------------------------------------

    def add(self, sample: Sample) -> bool:
        """Write one sample; False when skipped (duplicate, other labels, undecodable)."""
        labels = sample.meta.get("labels")
        if not self._labels_fit(labels, sample):
            return False
        decoded = cv2.imdecode(np.frombuffer(sample.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            self.counts.undecodable += 1
            return False
        image = np.asarray(decoded, np.uint8)
        phash = dhash(image)
        recent = self._recent.get((sample.device, sample.camera), ())
        # an audit frame is kept whatever it looks like: the audit sample is an unbiased
        # draw of what the camera saw, repeats included, and `edge eval --field` scores it so
        audit = "audit" in sample.meta.get("reasons", ())
        if not audit and self.duplicate_distance >= 0 and any(
                hamming(phash, h) <= self.duplicate_distance for h in recent):
            self.counts.duplicates += 1
            return False
        row = self._row(sample, image.shape[1], image.shape[0], phash)
        self._check_room(len(sample.jpeg))
        self._write(row, sample.jpeg)
        self._remember(sample.device, sample.camera, phash)
        self._since_export += 1
        self.export_if_due()
        return True

    def export_if_due(self) -> None:
        """`export` when images were added since the last one and `EXPORT_EVERY` of them, or
        `EXPORT_INTERVAL_S` seconds, have passed (the first image's export is due at once)."""
        if self._since_export and (
                self._since_export >= EXPORT_EVERY
                or time.monotonic() - self._exported_at >= EXPORT_INTERVAL_S):
            self.export()

    def _labels_fit(self, labels: Any, sample: Sample) -> bool:
        if not isinstance(labels, list) or not labels:
            self.counts.other_labels += 1
            log.warning("frame/meta from %s/%s has no label list (device older than the "
                        "sampling policies?); skipped", sample.device, sample.camera)
            return False
        if self.labels is None:
            self.labels = [str(name) for name in labels]
            write_bytes_atomic(self.root / "classes.txt", ("\n".join(self.labels) + "\n").encode())
            return True
        if labels != self.labels:
            self.counts.other_labels += 1
            return False
        return True

    def _row(self, sample: Sample, width: int, height: int, phash: int) -> dict[str, Any]:
        meta = sample.meta
        frame_id = int(meta["frame_id"])
        stem = f"{sample.device}_{sample.camera}_{frame_id:08d}"
        if self._taken(stem):  # a restarted device counts its frames from the start again
            stem = f"{stem}_{int(float(meta['ts']) * 1000)}"
        base, copy = stem, 1
        while self._taken(stem):  # a name a file of the user's (or an earlier copy) holds
            copy += 1
            stem = f"{base}_{copy}"
        # Detections are in source pixels; the JPEG may have been downsized (frames.max_height).
        scale_x = width / float(meta.get("width") or width)
        scale_y = height / float(meta.get("height") or height)

        def scaled(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{"label": d["label"], "class_id": int(d["class_id"]),
                     "score": float(d["score"]),
                     "box": [round(d["box"][0] * scale_x, 2), round(d["box"][1] * scale_y, 2),
                             round(d["box"][2] * scale_x, 2), round(d["box"][3] * scale_y, 2)]}
                    for d in items]

        return {"id": stem, "file": f"images/{stem}.jpg", "device": sample.device,
                "camera": sample.camera, "frame_id": frame_id, "time": meta.get("time", ""),
                "ts": float(meta["ts"]), "model": meta.get("model", ""),
                "reasons": list(meta.get("reasons", [])), "width": width, "height": height,
                "bytes": len(sample.jpeg), "phash": f"{phash:064x}",
                "objects": scaled(meta.get("predictions", [])),
                "below": scaled(meta.get("below_threshold", []))}

    def _taken(self, stem: str) -> bool:
        """Whether an image or label of that name is listed, or is on disk: a file put into
        the folder by hand (or copied from another collection) is never written over."""
        return (stem in self._ids or (self.root / "images" / f"{stem}.jpg").exists()
                or (self.root / "labels" / f"{stem}.txt").exists())

    def _check_room(self, size: int) -> None:
        if self.max_bytes is not None and self.counts.bytes + size > self.max_bytes:
            raise DiskFullError(
                f"{self.root} reached its allowance of {_megabytes(self.max_bytes)} MB "
                f"(--max-mb) with {len(self.rows)} images; raise --max-mb (a rerun with it "
                "resumes this folder) or collect into another folder")
        free = shutil.disk_usage(self.root).free
        if free < size:  # full, whatever room --min-free-mb keeps (a user check: "0.0 MB
            # free, below the 0 MB to keep free (--min-free-mb) ... or lower --min-free-mb")
            kept = (f"{len(self.rows)} images are collected and consistent; free space and "
                    "rerun to resume" if self.rows else "free space and rerun")
            raise DiskFullError(
                f"the disk holding {self.root} is full ({_kilobytes(free)} free, the next "
                f"image takes {_kilobytes(size)}); {kept}")
        if free - size < self.min_free_bytes:
            kept = (f"{len(self.rows)} images are collected and consistent; free space (or "
                    "lower --min-free-mb) and rerun to resume" if self.rows
                    else "free space or lower --min-free-mb")
            raise DiskFullError(
                f"the disk holding {self.root} has {free / 1e6:.1f} MB free, below the "
                f"{_megabytes(self.min_free_bytes)} MB to keep free (--min-free-mb); {kept}")

    def _write(self, row: dict[str, Any], jpeg: bytes) -> None:
        image_path = self.root / row["file"]
        label_path = self.root / "labels" / f"{row['id']}.txt"
        partials = [path.with_name(f".{path.name}{PARTIAL}") for path in (image_path, label_path)]
        try:
            partials[0].write_bytes(jpeg)
            partials[1].write_text(yolo_lines(row))
            with (self.root / MANIFEST).open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row, separators=(",", ":")) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            for partial in partials:
                partial.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self._rewrite_manifest()
                raise DiskFullError(
                    f"the disk holding {self.root} is full; {len(self.rows)} images are "
                    "collected and consistent; free space and rerun to resume") from exc
            raise
        os.replace(partials[0], image_path)
        os.replace(partials[1], label_path)
        self.rows.append(row)
        self._ids.add(row["id"])
        self.counts.written += 1
        self.counts.bytes += len(jpeg)

    def _rewrite_manifest(self) -> None:
        """After a failed append the manifest may end in a torn line: rewrite what is listed."""
        try:
            _write_lines(self.root / MANIFEST, self.rows)
        except OSError:
            log.warning("could not rewrite %s; the next run drops its torn last line",
                        self.root / MANIFEST)

    # -- exports ---------------------------------------------------------------------------

    def _export_texts(self) -> dict[str, bytes]:
        """Each export's file name and content, from the manifest's rows. At a resume, the
        files that differ from these are rewritten: missing or behind after a run killed
        between two exports (every `EXPORT_EVERY` images, and at the end), or edited by hand;
        compared by content, as a copied folder's files have new times (a user check: a copy
        read as an interrupted run)."""
        labels = self.labels or []
        texts = (json.dumps(coco_from_rows(self.rows, labels)),
                 json.dumps(label_studio_from_rows(self.rows, self.url_prefix)),
                 csv_from_rows(self.rows),
                 "path: .\ntrain: images\nval: images\nnames:\n" + "".join(
                     f"  {i}: {name}\n" for i, name in enumerate(labels)))
        return {name: text.encode() for name, text in zip(EXPORTS, texts, strict=True)}

    def export(self) -> None:
        """Rewrite COCO, Label Studio, the CSV manifest and data.yaml from the manifest."""
        self._write_exports(self._export_texts())

    def _write_exports(self, exports: dict[str, bytes]) -> None:
        self._since_export = 0
        self._exported_at = time.monotonic()
        try:
            for name, data in exports.items():
                write_bytes_atomic(self.root / name, data)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise DiskFullError(
                f"the disk holding {self.root} is full; the exports (COCO, Label Studio) keep "
                f"their previous content, the manifest lists {len(self.rows)} complete images; "
                "free space and rerun to resume") from exc


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file at `path` holds exactly `data`."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def yolo_lines(row: dict[str, Any]) -> str:
    """YOLO detection labels: `class cx cy w h` normalised to 0..1, boxes clipped to the frame.

    Five columns exactly: Ultralytics' loader rejects a label file with any other count, and
    coordinates outside 0..1. The model's scores stay in the manifest, COCO and Label Studio.
    """
    width, height = row["width"], row["height"]
    return "".join(f"{class_id} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                   f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n"
                   for class_id, (x1, y1, x2, y2) in pre_annotations(row))


def pre_annotations(row: dict[str, Any]) -> list[tuple[int, tuple[float, float, float, float]]]:
    """A row's detections as its label file holds them: (class id, x1 y1 x2 y2 in pixels),
    boxes clipped to the frame, those left with no area dropped."""
    width, height = row["width"], row["height"]
    kept = []
    for obj in row["objects"]:
        x1, x2 = (min(max(v, 0.0), width) for v in (obj["box"][0], obj["box"][2]))
        y1, y2 = (min(max(v, 0.0), height) for v in (obj["box"][1], obj["box"][3]))
        if x2 > x1 and y2 > y1:
            kept.append((int(obj["class_id"]), (x1, y1, x2, y2)))
    return kept


def coco_from_rows(rows: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """COCO detection JSON; category ids are class ids + 1 (COCO reserves 0)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, row in enumerate(rows, start=1):
        images.append({"id": index, "file_name": row["file"], "width": row["width"],
                       "height": row["height"], "date_captured": row["time"],
                       "edge_id": row["id"], "camera": row["camera"], "device": row["device"],
                       "reasons": row["reasons"]})
        for obj in row["objects"]:
            x1, y1, x2, y2 = obj["box"]
            w, h = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": index,
                                "category_id": obj["class_id"] + 1,
                                "bbox": [x1, y1, w, h], "area": round(w * h, 2), "iscrowd": 0,
                                "score": obj["score"]})
    return {"info": {"description": "collected by edge collect (model pre-annotations)"},
            "images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(labels)]}


def label_studio_from_rows(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Label Studio tasks with the model's boxes as predictions (percent of the image size),
    for a labelling config with `<Image name="image">` and `<RectangleLabels name="label">`."""
    tasks = []
    for row in rows:
        width, height = row["width"], row["height"]
        result = [{"id": f"{row['id']}_{i}", "from_name": "label", "to_name": "image",
                   "type": "rectanglelabels", "original_width": width,
                   "original_height": height, "image_rotation": 0, "score": obj["score"],
                   "value": {"x": 100 * obj["box"][0] / width, "y": 100 * obj["box"][1] / height,
                             "width": 100 * (obj["box"][2] - obj["box"][0]) / width,
                             "height": 100 * (obj["box"][3] - obj["box"][1]) / height,
                             "rotation": 0, "rectanglelabels": [obj["label"]]}}
                  for i, obj in enumerate(row["objects"])]
        scores = [obj["score"] for obj in row["objects"]]
        tasks.append({"data": {"image": prefix + row["file"], "edge_id": row["id"],
                               "camera": row["camera"], "device": row["device"],
                               "time": row["time"], "reasons": ",".join(row["reasons"])},
                      "predictions": [{"model_version": row["model"], "result": result,
                                       "score": min(scores) if scores else 0.0}]})
    return tasks


def csv_from_rows(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(MANIFEST_FIELDS)
    for row in rows:
        writer.writerow([";".join(row["reasons"]) if name == "reasons" else
                         len(row["objects"]) if name == "objects" else row[name]
                         for name in MANIFEST_FIELDS])
    return buffer.getvalue()


def _refuse_a_folder_of_others(root: Path) -> None:
    """InputError when `root` holds anything but hidden files and empty folders and has no
    manifest: a folder of the user's own (photos, a YOLO dataset, exports of something
    else), whose files a dataset written into it would mix with, overwrite or leave
    unlisted."""
    if not root.is_dir() or (root / MANIFEST).is_file():
        return
    present = sorted(path.name + ("/" if path.is_dir() else "") for path in root.iterdir()
                     if not path.name.startswith(".") and not _empty_folder(path))
    if present:
        raise InputError(
            f"--out {root} already holds files that edge collect did not write "
            f"({listed(present, 3)}) and no {MANIFEST}; collect into a new or empty folder (a "
            f"folder an earlier edge collect wrote, with its {MANIFEST}, is resumed)")


def _empty_folder(path: Path) -> bool:
    """An empty folder (`images/` made ahead of a run) holds nothing to mix with."""
    return path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None


def _lock_against_other_writers(root: Path) -> int:
    """Lock `root` for this process's writes (the descriptor holding the lock): a second
    `edge collect` into it would delete the first's unfinished files at its resume and list
    images twice. The lock goes with the process, so one killed leaves none behind."""
    path = root / LOCK
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(handle, 32).decode(errors="replace").strip()
            os.close(handle)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise InputError(
                f"--out {root} is being collected into by another edge collect"
                f"{f' (process {holder})' if holder.isdigit() else ''}; stop that one first "
                "or collect into another folder (two runs into one folder would list images "
                "twice)") from None
        # a run that ended removed the file it had locked: a lock on that file, opened just
        # before, would lock nothing another run can see, so the path's own file is locked
        if _same_file(handle, path):
            break
        os.close(handle)
    os.ftruncate(handle, 0)
    os.write(handle, str(os.getpid()).encode())
    return handle


def _same_file(handle: int, path: Path) -> bool:
    """Whether the open file `handle` is the one at `path` now."""
    try:
        here = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(handle)
    return (held.st_dev, held.st_ino) == (here.st_dev, here.st_ino)


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    write_bytes_atomic(path, text.encode())


def _kilobytes(size: int) -> str:
    """A little room on a disk, as `20 kB`."""
    return f"{size / 1e3:.0f} kB"


def _megabytes(size: int) -> str:
    """An allowance in MB as it was given (`0.05`, `500`), not rounded to a tenth."""
    return f"{size / 1e6:f}".rstrip("0").rstrip(".")
