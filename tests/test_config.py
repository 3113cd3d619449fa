from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_config
from edge.errors import ConfigError

VALID = """
device_id = "gate-01"
[model]
path = "model.onnx"
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=15&seed=1"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[frames]
interval_s = 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_defaults_and_resolves_the_model_path(tmp_path):
    config = load_config(write(tmp_path, VALID))
    assert config.device_id == "gate-01"
    assert config.model.path == tmp_path / "model.onnx"
    assert config.model.backend == "auto"
    assert config.topic_prefix == "edge/gate-01"
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls) == ("127.0.0.1", 1883, False)
    assert config.frames.interval_s == 10 and config.stats.interval_s == 5


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[model]", "[model]\nbackend = \"cuda\""),
         r"model\.backend: .*'auto', 'onnxruntime' or 'tensorrt'"),
        (("[mqtt]", "[mqtt]\nport = 1883"), r"mqtt\.port: unknown key"),
        (('name = "gate"', 'name = "gate"\nsorce = "x"'), r"cameras\.0\.sorce: unknown key"),
        (("interval_s = 10", 'interval_s = "often"'), r"frames\.interval_s: .*'often'"),
        (("interval_s = 10", "interval_s = -1"), r"frames\.interval_s: .*greater than or equal"),
        (('url = "mqtt://127.0.0.1:1883"', 'url = "http://x"'), r"mqtt\.url: .*mqtt://host"),
        (('name = "gate"', 'name = "gate/1"'), r"cameras\.0\.name: .*pattern"),
        (('path = "model.onnx"', ""), r"model\.path: required key is missing"),
        (("[[cameras]]\nname = \"gate\"\nsource = \"synthetic://shapes?fps=15&seed=1\"", ""),
         r"cameras: required key is missing"),
        (("device_id", "colour = 1\ndevice_id"), r"colour: unknown key"),
    ],
)
def test_bad_configs_name_the_key_and_what_was_expected(tmp_path, change, expected):
    text = VALID.replace(*change)
    assert text != VALID
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_duplicate_camera_names_are_rejected(tmp_path):
    text = VALID + '[[cameras]]\nname = "gate"\nsource = "synthetic://shapes"\n'
    with pytest.raises(ConfigError, match="repeated: gate"):
        load_config(write(tmp_path, text))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[model\n"))
