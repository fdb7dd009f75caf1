"""Readable dimensions in an exported graph: rnnedge's axis names and fixed sizes.

The exporters name the dimensions they cannot size themselves. With torch 2.13 the dynamo
exporter writes torch.export's symbols (`s21`, `s41`). The TorchScript-based exporter names
an output dimension after the node that computes it (`Transposeoutput_dim_2`), even where
the architecture fixes the size, as the `proj_size` of a projected LSTM does. ONNX Runtime,
Netron and `rnnedge run` show these names, so the written file gets the plan's axis names
(`batch`, `sequence`) and the fixed sizes instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence

from rnnedge.export.inputs import BATCH, SEQUENCE, InputSpec
from rnnedge.export.parity import ParityCase

logger = logging.getLogger(__name__)

# An identifier in a dim_param, which may be an expression such as "2*s41 + 1".
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def rename_input_symbols(graph, specs: Sequence[InputSpec]) -> dict[str, str]:
    """Rename the symbol at each dynamic input axis to that axis's name in `specs`.

    The symbol is renamed everywhere in the graph's inputs, outputs and value_info, and in
    those of its subgraphs, including inside expressions. A symbol found at two axes with
    different names stays as it is. Returns the mapping applied, old name to new name.
    """
    inputs = {value.name: value for value in graph.input}
    targets: dict[str, set[str]] = {}
    for spec in specs:
        value = inputs.get(spec.name)
        if value is None:
            continue
        dims = value.type.tensor_type.shape.dim
        for axis, name in spec.dynamic_axes().items():
            if axis < len(dims) and dims[axis].dim_param and dims[axis].dim_param != name:
                targets.setdefault(dims[axis].dim_param, set()).add(name)
    mapping = {}
    for symbol, names in targets.items():
        if len(names) == 1:
            mapping[symbol] = names.pop()
        else:
            logger.debug("symbol %s kept: it is at the axes %s", symbol, sorted(names))
    if mapping:
        for value in _shaped_values(graph):
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param:
                    dim.dim_param = _substitute(dim.dim_param, mapping)
    return mapping


def fix_output_dims(
    graph,
    cases: Sequence[ParityCase],
    output_axes: Sequence[Mapping[int, str]],
    axis_names: set[str],
) -> list[str]:
    """Give each graph output dimension that has no readable name a size or an axis name.

    A dimension is readable when it has a size, or a dim_param whose identifiers are all
    in `axis_names` (such as "batch" or "2*sequence"). Any other dimension, named or not,
    gets the size ONNX Runtime returned when that size was the same in every parity case,
    because the cases differ in batch size and length, so the architecture fixes it. A
    dimension whose size varied gets the name `output_axes` gives it, else "batch" or
    "sequence" when it equalled that in every case. Otherwise it stays as it is.

    A size the exporter declared is replaced the same way when the parity cases contradict
    it, and becomes unknown when no name applies. The dynamo exporter of torch 2.13, for one,
    declares the example's length on the sequence axis of a streaming graph's output.

    The value_info entries that declare a contradicted size are then dropped (see
    `drop_value_info_with_sizes`), because ONNX Runtime warns when a value's run-time shape
    differs from its declared one.

    Returns one line per dimension or entry changed, such as "output_1[2] = 16".
    """
    changes = []
    contradicted: set[int] = set()
    for index, value in enumerate(graph.output):
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        planned = output_axes[index] if index < len(output_axes) else {}
        for axis, dim in enumerate(tensor.shape.dim):
            declared = dim.dim_value if dim.HasField("dim_value") else None
            if declared is None and _readable(dim.dim_param, axis_names):
                continue
            sizes = _observed_sizes(cases, index, axis, len(tensor.shape.dim))
            if sizes is None:
                continue
            if len(set(sizes)) == 1:
                if declared != sizes[0]:
                    dim.dim_value = sizes[0]  # dim_value and dim_param are a oneof
                    changes.append(f"{value.name}[{axis}] = {sizes[0]}")
                continue
            if declared is not None:
                contradicted.add(declared)
            name = planned.get(axis) or _axis_of(cases, sizes)
            if name is not None:
                dim.dim_param = name
                changes.append(f"{value.name}[{axis}] = {name}")
            elif declared is not None:
                dim.ClearField("dim_value")
                changes.append(f"{value.name}[{axis}] = ? (was {declared})")
    dropped = drop_value_info_with_sizes(graph, contradicted)
    if dropped:
        changes.append(f"dropped value_info {', '.join(dropped)}")
    return changes


def drop_value_info_with_sizes(graph, sizes: set[int]) -> list[str]:
    """Remove the value_info entries of `graph` and its subgraphs that declare any of `sizes`.

    A size that parity showed to vary on an output, such as the example's length that the
    dynamo exporter of torch 2.13 writes on a streaming graph's time axis, is stale on the
    intermediate values too. value_info only records inferred shapes, so ONNX Runtime
    infers them again. Returns the names of the entries removed.
    """
    if not sizes:
        return []
    dropped = []
    for subgraph in _graphs(graph):
        kept = []
        for value in subgraph.value_info:
            dims = value.type.tensor_type.shape.dim
            if any(dim.HasField("dim_value") and dim.dim_value in sizes for dim in dims):
                dropped.append(value.name)
            else:
                kept.append(value)
        if len(kept) != len(subgraph.value_info):
            del subgraph.value_info[:]
            subgraph.value_info.extend(kept)
    return dropped


def _observed_sizes(
    cases: Sequence[ParityCase], output: int, axis: int, rank: int
) -> list[int] | None:
    """Return the size of one output axis in each case, or None where a case lacks it."""
    sizes = []
    for case in cases:
        if output >= len(case.output_shapes) or len(case.output_shapes[output]) != rank:
            return None
        sizes.append(case.output_shapes[output][axis])
    return sizes or None


def _axis_of(cases: Sequence[ParityCase], sizes: list[int]) -> str | None:
    if all(size == case.batch for case, size in zip(cases, sizes, strict=True)):
        return BATCH
    if all(size == case.seq_len for case, size in zip(cases, sizes, strict=True)):
        return SEQUENCE
    return None


def _readable(dim_param: str, axis_names: set[str]) -> bool:
    names = _IDENTIFIER.findall(dim_param)
    return bool(names) and all(name in axis_names for name in names)


def _substitute(dim_param: str, mapping: Mapping[str, str]) -> str:
    return _IDENTIFIER.sub(lambda match: mapping.get(match.group(), match.group()), dim_param)


def _shaped_values(graph) -> Iterator:
    """Yield the inputs, outputs and value_info of `graph` and of its subgraphs."""
    for subgraph in _graphs(graph):
        yield from subgraph.input
        yield from subgraph.output
        yield from subgraph.value_info


def _graphs(graph) -> Iterator:
    """Yield `graph` and its subgraphs, depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graphs(subgraph)
