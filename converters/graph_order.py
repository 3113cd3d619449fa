"""Nodes put in topological order, as ONNX requires and some exporters' graphs are not.

ONNX Runtime sorts a graph for itself, so an unsorted one runs there and is only refused by
ONNX's checker (paddle2onnx left two of a PaddleDetection model's 1,400 nodes ahead of their
inputs' producers, and ONNX Runtime's dynamic quantizer saved it so).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import onnx
from onnx import AttributeProto


def sort_nodes(graph: onnx.GraphProto) -> int:
    """Reorders `graph.node` so that every node comes after the nodes whose outputs it reads
    (a subgraph's reads of outer names count for the node that holds it), keeping the
    existing order wherever it already works. Returns how many nodes came before a node that
    makes one of their inputs; 0 where the graph is sorted already, or where no order exists
    (a cycle), which is left as it is for the checker to name."""
    nodes = list(graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    needs = [{producer[name] for name in _reads(node) if name in producer} - {index}
             for index, node in enumerate(nodes)]
    early = sum(any(p > index for p in needed) for index, needed in enumerate(needs))
    if not early:
        return 0
    waiting = [len(needed) for needed in needs]
    readers: list[list[int]] = [[] for _ in nodes]
    for index, needed in enumerate(needs):
        for p in needed:
            readers[p].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for reader in readers[index]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, reader)
    if len(order) < len(nodes):
        return 0
    del graph.node[:]
    graph.node.extend(nodes[index] for index in order)
    return early


def _reads(node: onnx.NodeProto) -> Iterator[str]:
    """Every name `node` reads: its inputs and, in its subgraphs (If, Loop, Scan), every
    node's inputs (names a subgraph makes itself are never top-level outputs)."""
    yield from node.input
    for attribute in node.attribute:
        graphs = ([attribute.g] if attribute.type == AttributeProto.GRAPH else
                  list(attribute.graphs) if attribute.type == AttributeProto.GRAPHS else [])
        for graph in graphs:
            for inner in graph.node:
                yield from _reads(inner)
