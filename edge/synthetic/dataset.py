"""Write the synthetic scene to disk as a labelled dataset in the YOLO txt layout.

    out/images/000001.png   out/labels/000001.txt   out/classes.txt   out/data.yaml

Each label line is `class_id cx cy w h`, normalised to 0..1 by the image size. Objects marked
difficult (mostly hidden) are left out, as annotators would.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from edge.errors import InputError
from edge.synthetic.scene import SHAPE_LABELS, SceneConfig, labelled_frames


def write_yolo_dataset(out: Path | str, frames: int, seed: int = 0, frame_step: int = 5,
                       config: SceneConfig | None = None, image_format: str = "png") -> int:
    """Render `frames` frames (every `frame_step`-th of the animation) into the folder `out`;
    returns objects written."""
    out = Path(out)
    if frames <= 0:
        raise InputError(f"frames must be positive, got {frames}")
    if image_format not in ("png", "jpg"):
        raise InputError(f"image format must be png or jpg, got {image_format!r}")
    images, labels = out / "images", out / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    config = config or SceneConfig()
    height, width = config.height, config.width
    written = 0
    for index, (truth, image) in enumerate(labelled_frames(seed, frames, frame_step, config), 1):
        stem = f"{index:06d}"
        cv2.imwrite(str(images / f"{stem}.{image_format}"), image)
        lines = []
        for box, class_id, difficult in zip(truth.boxes, truth.class_ids, truth.difficult,
                                            strict=True):
            if difficult:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            lines.append(f"{int(class_id)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f}"
                         f" {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
        (labels / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        written += len(lines)
    (out / "classes.txt").write_text("\n".join(SHAPE_LABELS) + "\n")
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(SHAPE_LABELS))
    (out / "data.yaml").write_text(f"path: {out.resolve()}\ntrain: images\nval: images\n"
                                   f"names:\n{names}")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edge.synthetic.dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=["png", "jpg"], default="png")
    args = parser.parse_args(argv)
    count = write_yolo_dataset(args.out, args.frames, args.seed, image_format=args.format)
    print(f"wrote {args.frames} images with {count} labelled objects to {args.out}")


if __name__ == "__main__":
    main()
