"""`edge collect`: sampled frames from the broker -> a labelling dataset (see edge.collect)."""

from __future__ import annotations

import argparse
import shutil
import threading
from typing import Any

from edge.cli.common import (
    add_tls_arguments,
    failed_with_json,
    parse_non_negative_float,
    parse_path,
    parse_positive_float,
    print_json,
    tls_files,
    warn_of_a_password_in,
)

#: The smallest --max-mb taken: a sampled JPEG is seldom under 5 kB.
MIN_ALLOWANCE_MB = 0.001


def cmd_collect(args: argparse.Namespace) -> int:
    from edge.cli.signals import stop_on_signals
    from edge.collect import CollectedDataset, Collector
    from edge.collect.phash import HASH_BITS
    from edge.errors import EdgeError, InputError
    from edge.files import require_output_folder
    from edge.mqtt.subscriber import check_device_prefix, checked_broker_url
    from edge.redact import redact_uri

    if args.max_mb is not None and args.max_mb < MIN_ALLOWANCE_MB:
        raise InputError(f"--max-mb {args.max_mb:g} is below {MIN_ALLOWANCE_MB:g} MB, less "
                         "than one sampled frame; give the megabytes the images may take")
    if not -1 <= args.duplicate_distance <= HASH_BITS:
        raise InputError(f"--duplicate-distance must be -1 (keep every frame) or 0 to "
                         f"{HASH_BITS} (bits of the perceptual hash), got "
                         f"{args.duplicate_distance}")
    check_device_prefix(args.prefix)
    checked_broker_url(args.mqtt)
    warn_of_a_password_in(args.mqtt)
    tls = tls_files(args)
    require_output_folder(args.out, "--out")
    created = not args.out.exists()
    max_bytes = None if args.max_mb is None else int(args.max_mb * 1e6)
    try:
        dataset = CollectedDataset(args.out, max_bytes=max_bytes,
                                   min_free_bytes=int(args.min_free_mb * 1e6),
                                   duplicate_distance=args.duplicate_distance,
                                   image_url_prefix=args.image_url_prefix)
    except EdgeError:
        if created:  # a disk limit passed already: no empty dataset left behind
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    collector = Collector(args.mqtt, args.prefix, dataset, tls=tls)
    stop = stop_on_signals()

    reached = threading.Event()

    def connected() -> None:
        reached.set()  # said with --json too, as edge monitor does: the JSON line comes last
        print(f"connected to {redact_uri(args.mqtt)}, collecting from {args.prefix}",
              flush=True)

    try:
        collector.run(args.seconds, stop, on_connected=connected)
    except EdgeError as exc:
        if not reached.is_set() or not collector.dataset.rows:
            # never connected, or a --prefix a level off: leave no empty dataset behind
            if created:
                shutil.rmtree(args.out, ignore_errors=True)
            raise
        if args.json:  # what was kept, with why it stopped
            return failed_with_json("edge collect", exc, collector.summary())
        _print_summary(collector.summary(), args)
        raise
    summary = collector.summary()
    if created and not collector.dataset.rows:  # nothing came: no empty dataset left behind
        shutil.rmtree(args.out, ignore_errors=True)
        summary["removed"] = True
    _print_summary(summary, args)
    return 0


def _print_summary(summary: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print_json(summary)
    else:
        print(f"{summary['images']} images in {args.out} ({summary['written']} new, "
              f"{summary['resumed']} from before; skipped {summary['duplicates']} "
              f"near-duplicates, {summary['unpaired']} unpaired, "
              f"{summary['other_labels']} from models with other labels)")
        if summary.get("removed"):
            print(f"{args.out}, made by this run, was removed: it would hold no image")


def add_commands(commands: Any) -> None:
    collect = commands.add_parser(
        "collect", help="build a labelling dataset from sampled frames (YOLO, COCO, Label "
                        "Studio)",
        description="Subscribes to the sampled frames of one device or a fleet and writes clean "
                    "images with the model's detections as pre-annotations: YOLO txt (the "
                    "layout `edge eval --data` reads), COCO JSON, Label Studio import JSON and "
                    "a manifest. Near-duplicates are skipped; rerunning resumes.")
    collect.add_argument("--mqtt", required=True, metavar="URL",
                         help="mqtt[s]://[user@]host[:port] (1883, or 8883 for mqtts://), the "
                              "password in $EDGE_MQTT_PASSWORD")
    collect.add_argument("--out", required=True, type=parse_path, metavar="DIR",
                         help="dataset folder (made if missing; an existing one is resumed)")
    collect.add_argument("--prefix", default="edge/+",
                         help="topic prefix; edge/+ collects from every device (default)")
    add_tls_arguments(collect)
    collect.add_argument("--seconds", type=parse_positive_float,
                         help="stop after this long (default: until interrupted)")
    collect.add_argument("--max-mb", type=parse_positive_float,
                         help="stop when the images reach this size")
    collect.add_argument("--min-free-mb", type=parse_non_negative_float, default=100.0,
                         help="stop when the disk has less free space (default 100)")
    collect.add_argument("--duplicate-distance", type=int, default=6,
                         help="skip a frame whose 256-bit perceptual hash is within this many "
                              "bits of a recent one from the same camera (audit samples are "
                              "always kept; -1 keeps all; "
                              "default 6)")
    collect.add_argument("--image-url-prefix",
                         help="Label Studio task image URL before images/<name>.jpg (default: "
                              "the one a resumed folder's label-studio.json has, else Label "
                              "Studio local files with the dataset folder as document root, "
                              "/data/local-files/?d=)")
    collect.add_argument("--json", action="store_true", help="end with one JSON summary line")
    collect.set_defaults(handler=cmd_collect)
