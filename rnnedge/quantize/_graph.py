"""Small helpers over ONNX graphs shared by the quantization passes."""

from __future__ import annotations

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
        for attribute in node.attribute:
            subgraphs = list(attribute.graphs)
            if attribute.type == onnx.AttributeProto.GRAPH:
                subgraphs.append(attribute.g)
            for sub in subgraphs:
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
