"""--labels as people write label files."""

from __future__ import annotations

import json

import pytest

from converters.errors import ConversionError
from converters.labels import labels_from_option


@pytest.mark.parametrize(("text", "expected"), [
    ("person\ncar\n\nbus\n", ("person", "car", "bus")),
    ("0 person\n1 car\n2 traffic light\n", ("person", "car", "traffic light")),  # label maps
    ("1: person\r\n2: car\r\n", ("person", "car")),  # 1-based, colon, CRLF
    ("0\n90\n180\n270\n", ("0", "90", "180", "270")),  # numbers as names stay names
    ("3 door car\n5 door car\n", ("3 door car", "5 door car")),  # not numbered in order
    ("0 person\ncar\n", ("0 person", "car")),  # not every line numbered: as written
    ("\ufeff0 rect\r\n1 circle\r\n", ("rect", "circle")),  # Notepad's UTF-8 with a BOM
    ("\ufeffrect\ncircle\n", ("rect", "circle")),
])
def test_label_files(tmp_path, text, expected):
    path = tmp_path / "labels.txt"
    path.write_bytes(text.encode())
    assert labels_from_option(str(path)) == expected


def test_json_and_comma_lists_and_bad_ones(tmp_path):
    (tmp_path / "l.json").write_text('{"1": "car", "0": "person"}')
    assert labels_from_option(str(tmp_path / "l.json")) == ("person", "car")
    assert labels_from_option("cat, dog,bird") == ("cat", "dog", "bird")
    assert labels_from_option("cat,dog,") == ("cat", "dog")  # one trailing comma: allowed
    with pytest.raises(ConversionError, match=r"--labels a,,c has an empty name \(position 2\); "
                                              "give every class a name"):
        labels_from_option("a,,c")
    with pytest.raises(ConversionError, match="labels must be unique; repeated in --labels: cat"):
        labels_from_option("cat,dog,cat")
    with pytest.raises(ConversionError, match="does not exist"):
        labels_from_option(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("text", [
    '{"glioma": 0, "meningioma": 1, "pituitary": 3, "notumor": 2}',  # Keras' class_indices
    '{"0": ["n0", "glioma"], "1": ["n1", "meningioma"], "2": ["n2", "notumor"], '
    '"3": ["n3", "pituitary"]}',  # torchvision's imagenet_class_index.json
    '{"3": "pituitary", "0": "glioma", "2": "notumor", "1": "meningioma"}',
])
def test_json_maps_either_way_round_give_names_in_class_id_order(tmp_path, text):
    path = tmp_path / "class_indices.json"
    path.write_text(text)
    assert labels_from_option(str(path)) == ("glioma", "meningioma", "notumor", "pituitary")


@pytest.mark.parametrize(("text", "message"), [
    ('{"cat": 0, "dog": 2}', r"its names skip class id\(s\) 1; name every class from 0"),
    ('{"cat": "x", "dog": 1}', "must hold a JSON list of names, or a mapping from class id to "
                               "name"),
    ('{"cat": 0, "dog": 0}', r"maps several names to class id\(s\) 0; give each class one name"),
    ('{"0": ["n1"], "1": ["n2", "b"]}', "must hold a JSON list of names"),  # no [wnid, name]
    ('{"0": ["n1", "a", "x"], "1": ["n2", "b", "y"]}', "must hold a JSON list of names"),
    ("[1, 2]", "must hold a JSON list of names"),
    ("{}", "must hold a JSON list of names"),
])
def test_json_labels_of_another_shape_are_refused_naming_the_shapes_read(tmp_path, text,
                                                                           message):
    path = tmp_path / "labels.json"
    path.write_text(text)
    with pytest.raises(ConversionError, match=message):
        labels_from_option(str(path))


@pytest.mark.parametrize("names", ["\n  0: person\n  1: car\n  2: traffic light\n",
                                   " [person, car, traffic light]\n"])
def test_an_ultralytics_dataset_file_gives_its_names(tmp_path, names):
    path = tmp_path / "data.yaml"
    path.write_text(f"path: ../data\ntrain: images/train\nval: images/val\nnames:{names}")
    assert labels_from_option(str(path)) == ("person", "car", "traffic light")


def test_a_yaml_file_without_names_is_refused(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("path: ../data\ntrain: images\n")
    with pytest.raises(ConversionError, match="has no `names:` list or mapping from class ids"):
        labels_from_option(str(path))


def test_numbered_lines_with_a_gap_are_kept_with_a_warning(tmp_path, caplog):
    path = tmp_path / "labels.txt"
    path.write_text("0 rect\n2 circle\n3 tri\n")
    assert labels_from_option(str(path)) == ("0 rect", "2 circle", "3 tri")
    assert "every line starts with a number (0, 2, 3), not 0, 1, 2... in order" in caplog.text


def test_lines_numbered_from_one_are_read_with_a_note(tmp_path, caplog):
    """TensorFlow's label maps number from 1 (0 is background): said, as the name taken."""
    caplog.set_level("INFO")
    path = tmp_path / "labels.txt"
    path.write_text("1 person\n2 car\n")
    assert labels_from_option(str(path)) == ("person", "car")
    assert "numbers its classes from 1: 'person' is read as class 0's name" in caplog.text
    caplog.clear()
    path.write_text("0 person\n1 car\n")
    assert labels_from_option(str(path)) == ("person", "car") and not caplog.text


def test_label_files_as_windows_editors_save_them(tmp_path):
    """Notepad's "Unicode" is UTF-16 with a byte order mark; its "ANSI" (Latin-1) is refused
    with the fix; suffixes in capitals are the same formats."""
    (tmp_path / "utf16.txt").write_bytes("café\nniño\n".encode("utf-16"))
    assert labels_from_option(str(tmp_path / "utf16.txt")) == ("café", "niño")
    (tmp_path / "latin1.txt").write_bytes("café\nniño\n".encode("latin-1"))
    with pytest.raises(ConversionError, match=r"latin1.txt is not UTF-8 text \(byte 3 is 0xe9: "
                                              r"Latin-1 .*\); save it as UTF-8"):
        labels_from_option(str(tmp_path / "latin1.txt"))
    (tmp_path / "DATA.YML").write_text("nc: 2\nnames: [alpha, beta]\n")
    assert labels_from_option(str(tmp_path / "DATA.YML")) == ("alpha", "beta")


def test_folders_empty_files_and_gaps_are_named_as_such(tmp_path, monkeypatch):
    with pytest.raises(ConversionError, match="is a folder; pass a labels file"):
        labels_from_option(str(tmp_path))
    # one class whose name is also a folder here: how to say it is a name
    (tmp_path / "text").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConversionError, match="for one class named 'text', end it with a "
                                              "comma: --labels text,"):
        labels_from_option("text")
    assert labels_from_option("text,") == ("text",)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ConversionError, match=r"labels file .*empty\.txt holds no label names"):
        labels_from_option(str(tmp_path / "empty.txt"))
    with pytest.raises(ConversionError, match="--labels has no label names"):
        labels_from_option("")
    (tmp_path / "gap.yaml").write_text("names:\n  0: a\n  2: c\n")
    with pytest.raises(ConversionError, match="its names skip class id\\(s\\) 1; name every "
                                              "class from 0"):
        labels_from_option(str(tmp_path / "gap.yaml"))


@pytest.mark.parametrize(("labels", "bad"), [
    ("car,person/rider,bike", "label 'person/rider' (class 1) holds"),
    ("car,a+b,c#d", "labels 'a+b' (class 1), 'c#d' (class 2) hold"),
])
def test_labels_that_mqtt_topics_cannot_carry_are_refused(tmp_path, edge, labels, bad):
    """A label is a level of its count topic (`<camera>/<label>/count`): a / would add a level,
    + and # are wildcards a publish is refused for."""
    from tests.converters.cli_results import assert_refused
    from tests.converters.exporter_graphs import classifier

    result = edge("convert", classifier(tmp_path / "m.onnx"), "-o", tmp_path / "x.onnx",
                  "--labels", labels)
    assert_refused(result, f"{bad} / + # or NUL, which MQTT topics reserve "
                           "(edge publishes <camera>/<label>/count); name the classes without "
                           "them; edge convert --labels names the classes")
    assert not (tmp_path / "x.onnx").exists()


SPEC = {"spec_version": 1, "task": "classify", "labels": ["a", "b"], "head": "logits",
        "output": "y", "input": {"name": "x", "width": 8, "height": 8}}


def test_a_spec_with_such_labels_is_refused_when_read(tmp_path):
    from edge.errors import ModelError
    from edge.spec import ModelSpec

    good = ModelSpec.from_json(json.dumps(SPEC), "m.onnx")
    assert good.labels == ("a", "b")
    with pytest.raises(ModelError, match=r"label 'a/b' \(class 0\) holds / \+ # or NUL"):
        ModelSpec.from_json(json.dumps({**SPEC, "labels": ["a/b", "c"]}), "m.onnx")


@pytest.mark.parametrize("text", ['["", "b", "c"]', '{"0": " ", "1": "b", "2": "c"}',
                                  '{"": 0, "b": 1, "c": 2}'])
def test_an_empty_label_from_a_file_is_refused(tmp_path, edge, text):
    """An empty name would be an empty topic level (`<camera>//count`)."""
    from tests.converters.cli_results import assert_refused
    from tests.converters.exporter_graphs import classifier

    labels = tmp_path / "labels.json"
    labels.write_text(text)
    result = edge("convert", classifier(tmp_path / "m.onnx"), "-o", tmp_path / "x.onnx",
                  "--labels", labels, "--no-verify")
    assert_refused(result, "has an empty label; every class needs a name")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"labels": ["a", "90/x"]}, "label '90/x' (class 1) holds / + # or NUL"),
    ({"labels": ["", "b"]}, "class 0 has an empty label"),
    ({"labels": ["a", "a"]}, "label 'a' names several classes"),  # one count topic for both
    # every problem at once: the labels' two and the other fields'
    ({"labels": ["a/b", "", "c"], "input": {**SPEC["input"], "pad_value": 300}, "head": None},
     "labels: class 1 has an empty label; every class needs a name (it is a level of MQTT "
     "topics); label 'a/b' (class 0) holds / + # or NUL"),
    ({"input": {**SPEC["input"], "pad_value": 300}},
     "input.pad_value: Input should be less than or equal to 255"),
])
def test_a_bad_spec_is_refused_in_one_line_that_says_to_re_convert(change, message):
    from edge.errors import ModelError
    from edge.spec import ModelSpec

    with pytest.raises(ModelError) as refused:
        ModelSpec.from_json(json.dumps({**SPEC, **change}), "m.onnx")
    text = str(refused.value)
    assert text.startswith("m.onnx: invalid model spec: ") and message in text
    if "head" in change:
        assert "input.pad_value: Input should be less than or equal to 255" in text
        assert "head: Input should be" in text
    assert text.endswith("; re-convert the model with `edge convert`")
    assert "\n" not in text and "pydantic" not in text and "input_value" not in text


@pytest.mark.parametrize("text", ["0 a\n1 \n2 c\n", "1: a\n2:\n3: c\n"])
def test_a_numbered_line_without_a_name_is_refused(tmp_path, text):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(ConversionError, match=r"class id\(s\) (1|2) have no name; give every "
                                              "class a name"):
        labels_from_option(str(path))
