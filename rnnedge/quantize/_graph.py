"""Small helpers over ONNX graphs shared by the quantization passes."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import onnx
from onnx import numpy_helper


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default ONNX domain that `model` imports; 0 if none."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 0


def iter_graphs(
    graph: onnx.GraphProto, scopes: list[onnx.GraphProto]
) -> Iterator[tuple[onnx.GraphProto, list[onnx.GraphProto]]]:
    """Yield each graph with its enclosing graphs, innermost first, subgraphs first."""
    for node in graph.node:
        for sub in subgraphs(node):
            yield from iter_graphs(sub, [graph, *scopes])
    yield graph, scopes


def constant_value(name: str, graph: onnx.GraphProto, scopes: list[onnx.GraphProto]):
    """Return the value of `name` if it is an initializer or Constant output in scope, else None."""
    if not name:
        return None
    for scope in (graph, *scopes):
        for tensor in scope.initializer:
            if tensor.name == name:
                return numpy_helper.to_array(tensor)
        for node in scope.node:
            if node.op_type == "Constant" and node.output[0] == name:
                for attribute in node.attribute:
                    if attribute.name == "value":
                        return numpy_helper.to_array(attribute.t)
                return None
        # A name produced by a node or fed as an input of this scope hides outer ones.
        if any(name in n.output for n in scope.node) or any(i.name == name for i in scope.input):
            return None
    return None


class Namer:
    """Fresh tensor and node names that collide with nothing in the model."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.used: set[str] = set()
        for graph, _ in iter_graphs(model.graph, []):
            self.used.update(t.name for t in graph.initializer)
            self.used.update(v.name for v in (*graph.input, *graph.output))
            for node in graph.node:
                self.used.update(node.output)
                self.used.add(node.name)

    def __call__(self, base: str) -> str:
        candidate, index = base, 1
        while candidate in self.used:
            candidate = f"{base}_{index}"
            index += 1
        self.used.add(candidate)
        return candidate


def sort_topologically(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> None:
    """Reorder `graph.node` in place so that each node follows the producers of its inputs.

    Nodes keep their original order wherever the dependencies allow it (Kahn's algorithm,
    taking the earliest ready node first). A node that uses a value inside one of its
    subgraphs depends on that value's producer too, and subgraphs are sorted the same way.
    Nodes whose inputs no node produces keep their relative order at the end, where the
    ONNX checker reports them.
    """
    nodes = list(graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    dependents: list[list[int]] = [[] for _ in nodes]
    waiting = [0] * len(nodes)
    for index, node in enumerate(nodes):
        needed = {producer[name] for name in _used_names(node) if name in producer}
        needed.discard(index)
        waiting[index] = len(needed)
        for source in needed:
            dependents[source].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for dependent in dependents[index]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    placed = set(order)
    order += [index for index in range(len(nodes)) if index not in placed]
    del graph.node[:]
    graph.node.extend(nodes[index] for index in order)
    scope = outer | {v.name for v in graph.input} | {t.name for t in graph.initializer}
    scope |= set(producer)
    for node in graph.node:
        for subgraph in subgraphs(node):
            sort_topologically(subgraph, frozenset(scope))


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """Return the graphs in `node`'s attributes: Loop and Scan bodies, If branches."""
    found = []
    for attribute in node.attribute:
        found.extend(attribute.graphs)
        if attribute.type == onnx.AttributeProto.GRAPH:
            found.append(attribute.g)
    return found


def _used_names(node: onnx.NodeProto) -> set[str]:
    """Return the inputs of `node` and every name its subgraphs' nodes read."""
    names = {name for name in node.input if name}
    for subgraph in subgraphs(node):
        for inner in subgraph.node:
            names |= _used_names(inner)
    return names
