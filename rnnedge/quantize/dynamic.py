"""Dynamic int8: int8 weights, activations quantized at run time.

ONNX Runtime's `quantize_dynamic` turns `LSTM` into its int8 `DynamicQuantizeLSTM` kernel and
MatMul/Gemm into integer products, but has no int8 GRU. rnnedge then rewrites each GRU node
whose hidden size reaches the threshold into the int8 Scan path of `gru_int8`; below it the
float GRU operator is faster, because the Scan pays a fixed cost per time step, and those
GRU nodes keep float compute with their weights stored in int8 (weight-only), so the file
still shrinks about 4x.

MatMul and Gemm nodes inside Loop and Scan bodies (the recurrence of a scripted cell loop or
of a projected LSTM) are quantized too, through the quantizer's `EnableSubgraph` option.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from rnnedge.quantize._graph import sort_topologically
from rnnedge.quantize._ort_quantizer import call_quantizer, preprocess
from rnnedge.quantize.gru_int8 import GruRewrite, rewrite_grus
from rnnedge.quantize.modes import GruInt8
from rnnedge.quantize.weight_only import quantize_weights

# Smallest GRU hidden size at which the int8 Scan path beat the float GRU operator in
# benchmarks/gru_int8.py (batch 1, one thread): it lost at 256 and won at 384 and 512 on an
# Intel Xeon with AVX-512 VNNI and on an AMD EPYC without VNNI. A device profile can set
# its own value as `quantization.gru_int8_min_hidden`.
DEFAULT_GRU_INT8_MIN_HIDDEN = 384


def quantize_dynamic_int8(
    source: Path,
    reduce_range: bool,
    per_channel: bool,
    gru_int8: GruInt8 = GruInt8.AUTO,
    gru_min_hidden: int = DEFAULT_GRU_INT8_MIN_HIDDEN,
) -> tuple[onnx.ModelProto, GruRewrite, list[str]]:
    """Quantize `source` dynamically.

    Returns the model, what happened to its GRU nodes and the float GRU weights stored in int8.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="rnnedge-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "quantized.onnx"
        preprocess(source, prepared)
        call_quantizer(
            "dynamic quantization",
            source,
            lambda: quantize_dynamic(
                str(prepared),
                str(quantized),
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
                extra_options={"EnableSubgraph": True},
            ),
        )
        model = onnx.load(str(quantized))
    # The quantizer reorders the nodes it rewrites without counting the outer-scope values
    # that Loop and Scan bodies read, so a Loop can end up before their producers.
    sort_topologically(model.graph)
    rewrite = GruRewrite()
    if gru_int8 is not GruInt8.NEVER:
        rewrite = rewrite_grus(
            model,
            # Per-channel scales cut the error of the recurrent product at no cost in speed.
            per_channel=True,
            reduce_range=reduce_range,
            min_hidden=gru_min_hidden if gru_int8 is GruInt8.AUTO else 0,
        )
    stored = quantize_weights(model, {"GRU": (1, 2)}, per_channel=per_channel)
    return model, rewrite, stored
