"""systemd/edge.example.toml is the config's reference: it loads, and it shows every key."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from edge.config import Config, load_config

EXAMPLE = Path(__file__).parents[1] / "systemd" / "edge.example.toml"


def key_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every key of the config, sections and lists of sections followed: `model.max_batch`."""
    for name, field in model.model_fields.items():
        options = typing.get_args(field.annotation) or (field.annotation,)
        sections = [t for t in options if typing.get_origin(t) is None
                    and isinstance(t, type) and issubclass(t, BaseModel)]
        items = [typing.get_args(t)[0] for t in options if typing.get_origin(t) is list]
        listed = [t for t in items if typing.get_origin(t) is None
                  and isinstance(t, type) and issubclass(t, BaseModel)]
        if sections:
            yield from key_paths(sections[0], f"{prefix}{name}.")
            continue
        yield f"{prefix}{name}"
        if listed:
            yield from key_paths(listed[0], f"{prefix}{name}.")


def test_the_example_loads():
    config = load_config(EXAMPLE)
    assert config.cameras[0].name == "gate"


def test_the_example_shows_every_key():
    text = EXAMPLE.read_text()
    missing = [key for key in key_paths(Config)
               if not re.search(rf"^\s*#?\s*(\[\[?)?[\w.]*\b{re.escape(key.split('.')[-1])}\b",
                                text, re.MULTILINE)]
    assert not missing, f"add these keys (set or commented) to {EXAMPLE.name}: {missing}"
