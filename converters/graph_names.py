"""Renaming a value inside an ONNX graph, so a node appended after it can take its name."""

from __future__ import annotations

import onnx


def rename_value(graph: onnx.GraphProto, name: str, new_name: str) -> None:
    """`name` becomes `new_name` wherever a node makes or reads it, and in a shape recorded for
    it (`value_info`); the graph's inputs and outputs keep their names."""
    for node in graph.node:
        node.output[:] = [new_name if value == name else value for value in node.output]
        node.input[:] = [new_name if value == name else value for value in node.input]
    for value_info in graph.value_info:
        if value_info.name == name:
            value_info.name = new_name
