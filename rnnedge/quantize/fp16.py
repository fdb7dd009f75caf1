"""fp16: float16 weights and compute, with float32 inputs and outputs kept.

The CPU provider has no float16 LSTM or GRU kernels and inserts casts back to float32, so
on a CPU fp16 halves the file but saves no time. The mode is meant for CUDA and TensorRT.
"""

from __future__ import annotations

import onnx

from rnnedge.quantize._graph import Namer, iter_graphs, sort_topologically


def convert_fp16(float_model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a float16 copy of `float_model` with float32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.ModelProto()
    model.CopyFrom(float_model)
    converted = convert_float_to_float16(
        model,
        keep_io_types=True,
        disable_shape_infer=False,
        node_block_list=_transposes_into_matmul(model),
    )
    # The converter appends the Cast nodes that keep the graph's inputs in float32 at the
    # end of the node list, after the nodes that read them, and the ONNX checker rejects
    # that order.
    sort_topologically(converted.graph)
    return converted


def _transposes_into_matmul(model: onnx.ModelProto) -> list[str]:
    """Return the names of the Transpose nodes that feed a MatMul, naming unnamed ones.

    NOTE: onnxruntime 1.32's CPU provider crashes the process (a segmentation fault while
    it optimizes the session) on a float16 Transpose that feeds a MatMul, the shape of a
    recurrent tagger's per-step head. It crashes with the MatMul in float16, and with the
    MatMul in float32 behind a Cast, but not with the Transpose in float32, which costs
    two Casts. Disabling its MatmulTransposeFusion or NchwcTransformer also avoids it.
    A Transpose into a float16 Gemm loads fine.
    """
    namer = Namer(model)
    names = []
    for graph, _ in iter_graphs(model.graph, []):
        readers: dict[str, set[str]] = {}
        for node in graph.node:
            for name in node.input:
                readers.setdefault(name, set()).add(node.op_type)
        for node in graph.node:
            if node.op_type != "Transpose":
                continue
            if "MatMul" not in readers.get(node.output[0], set()):
                continue
            if not node.name:
                node.name = namer("Transpose")
            names.append(node.name)
    return names
