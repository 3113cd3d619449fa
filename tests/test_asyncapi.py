"""docs/asyncapi.yaml and the README's topic table agree with the client's models."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml

from edge.client import KINDS
from edge.client.asyncapi import (
    ASYNCAPI_PATH,
    README_PATH,
    TABLE_BEGIN,
    TABLE_END,
    asyncapi_document,
    asyncapi_yaml,
    topic_table,
)


def test_asyncapi_file_is_generated_from_the_models():
    assert ASYNCAPI_PATH.read_text(encoding="utf-8") == asyncapi_yaml(), (
        "docs/asyncapi.yaml disagrees with edge.client; run `python -m edge.client.asyncapi "
        "--write` and commit the result")


def test_readme_topic_table_is_generated_from_the_document():
    readme = README_PATH.read_text(encoding="utf-8")
    table = readme[readme.index(TABLE_BEGIN) + len(TABLE_BEGIN):readme.index(TABLE_END)]
    assert table.strip() == topic_table(), (
        "README.md's topic table disagrees with edge.client; run `python -m "
        "edge.client.asyncapi --write`")


def test_each_topic_names_the_kind_a_subscriber_asks_for():
    """A user check: the table gave topics and models, and `kinds=` took other names (`event`
    for the events topic, `camera_status`...), found only in the source."""
    rows = {row.split(" | ")[0].strip("| `"): row.split(" | ")[1]
            for row in topic_table().splitlines()[2:]}
    assert rows["<prefix>/<camera>/events"] == "`event`"
    assert rows["<prefix>/<camera>/status"] == "`camera_status`"
    assert rows["<prefix>/cmd/<command>"] == "-"  # the device's input: no subscriber kind
    assert {row.strip("`") for row in rows.values()} - {"-"} == {kind.name for kind in KINDS}


def test_the_printed_document_is_the_written_one_byte_for_byte():
    """A user check: the printed YAML ended in one more blank line than docs/asyncapi.yaml."""
    printed = subprocess.run([sys.executable, "-m", "edge.client.asyncapi"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert printed == ASYNCAPI_PATH.read_text(encoding="utf-8")


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_document_is_well_formed_asyncapi_3():
    document = yaml.safe_load(asyncapi_yaml())
    assert document["asyncapi"] == "3.0.0" and document == asyncapi_document()
    for ref in _refs(document):
        assert _resolve(document, ref) is not None, ref
    for name, channel in document["channels"].items():
        names = {part[1:-1] for part in channel["address"].split("/") if part.startswith("{")}
        assert names == set(channel["parameters"]), name
    operations = document["operations"].values()
    assert {op["channel"]["$ref"].rsplit("/", 1)[-1] for op in operations} == \
        set(document["channels"])
    for operation in operations:
        assert operation["action"] in ("send", "receive")
        assert set(operation["bindings"]["mqtt"]) == {"qos", "retain", "bindingVersion"}
    assert {kind.name for kind in KINDS} < set(document["channels"])


def test_schemas_are_strict_where_the_contract_is():
    schemas = asyncapi_document()["components"]["schemas"]
    detection = schemas["Detection"]
    assert set(detection["required"]) == {"label", "class_id", "score", "box"}
    assert detection["properties"]["box"]["minItems"] == detection["properties"]["box"][
        "maxItems"] == 4
    event = schemas["Event"]
    assert event["properties"]["type"]["enum"] == ["new", "update", "end"]
    assert event["properties"]["v"]["maximum"] == 1
