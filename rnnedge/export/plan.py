"""The plan of one export: the module to convert, its graph inputs and outputs, the shapes
the parity check runs at, and the metadata to store.

The reference that parity compares against is always the source model itself, never a
rewritten copy, so that a lowering (projected LSTM) or a streaming wrapper is proven
against what the user trained.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from rnnedge.errors import InputError, RnnedgeError
from rnnedge.export.exporters import FlatOutputs
from rnnedge.export.inputs import (
    BATCH,
    SEQUENCE,
    Example,
    InputRole,
    InputSpec,
    cell_name,
    find_recurrent,
    input_specs,
    make_arrays,
    parse_example_shape,
    sort_lengths,
)
from rnnedge.export.projection import has_projection, lower_projections
from rnnedge.export.sources import ModelSource, SourceKind, forward_parameters
from rnnedge.export.streaming import StreamingPlan, plan_streaming
from rnnedge.runtime.metadata import Layout, ModelMetadata, Normalization, Task

logger = logging.getLogger(__name__)

OUTPUT_NAME = "output"
CHECKPOINT_EXAMPLE = (1, 10)  # (batch, seq_len) of the example for rnnedge checkpoints
# Parity shapes, (batch, seq_len): a single step, a long sequence and an odd length, at
# batch sizes other than the example's. Those that share a size with the example are
# skipped, so that every case differs from it in both.
PARITY_CANDIDATES = ((3, 37), (2, 1), (5, 123), (4, 23), (6, 64), (7, 2))
PARITY_CASES = 3
# Two probe shapes with sizes unlikely to equal a feature or hidden size; an output axis
# whose size follows the batch or the length between them is dynamic.
PROBE_SHAPES = ((2, 11), (3, 13))
# The CLI flag and the input shape of each layout, keyed by batch_first.
_LAYOUT_FLAGS = {True: "--batch-first", False: "--time-major"}
_LAYOUT_SHAPES = {True: "(batch, time, features)", False: "(time, batch, features)"}


@dataclass
class ExportPlan:
    """Everything the exporters and the checks need, decided once per export."""

    module: nn.Module
    reference: nn.Module
    specs: list[InputSpec]
    output_names: list[str]
    output_axes: list[dict[int, str]]
    parity_shapes: list[tuple[int, int]]
    example: Example
    metadata: ModelMetadata
    lowered: list[str] = field(default_factory=list)
    streaming: StreamingPlan | None = None
    # True when the model rejects lengths that are not in decreasing order.
    sorted_lengths: bool = False

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def example_tensors(self, minimum: int) -> list[torch.Tensor]:
        """Return example inputs with the batch size and length raised to `minimum`."""
        batch = max(self.example.batch, minimum)
        seq_len = max(self.example.seq_len, minimum)
        arrays = make_arrays(self.specs, batch, seq_len, np.random.default_rng(0))
        if self.sorted_lengths:
            arrays = sort_lengths(self.specs, arrays)
        return [torch.from_numpy(a) for a in arrays]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {spec.name: spec.dynamic_axes() for spec in self.specs}
        for name, output_axes in zip(self.output_names, self.output_axes, strict=True):
            axes[name] = dict(output_axes)
        return {name: value for name, value in axes.items() if value}


def plan_export(
    loaded: ModelSource,
    example_shape: tuple[int, int, int] | str | None,
    batch_first: bool | None,
    streaming: bool,
) -> ExportPlan:
    """Decide inputs, outputs, parity shapes and metadata for `loaded`.

    Raises:
        InputError: the example shape is missing or invalid, or the model cannot stream.
    """
    example = _example_for(loaded, example_shape, batch_first)
    parameters = ["input"] if loaded.kind is SourceKind.CHECKPOINT else _parameters(loaded)
    specs = input_specs(parameters, loaded.module, example)
    if loaded.dynamic_dims is not None:
        specs[0] = _fix_static_axes(specs[0], loaded.dynamic_dims, example)
    module, lowered = loaded.module, []
    scripted = isinstance(module, torch.jit.ScriptModule)
    if not scripted and has_projection(module):
        module, lowered = lower_projections(module)
        logger.info("lowered projected LSTM modules to a loop: %s", lowered)
    reference: nn.Module = loaded.module
    stream_plan = None
    model_inputs = len(specs)
    if streaming:
        if any(spec.role is not InputRole.SEQUENCE for spec in specs):
            raise InputError(_streaming_rejected(loaded.module, specs))
        stream_plan = plan_streaming(loaded.module, model_inputs)
        reference = stream_plan.module
        module = plan_streaming(module, model_inputs).module if lowered else reference
        specs = specs + list(stream_plan.state_specs)
    flat_reference = FlatOutputs(reference)
    sorted_lengths = _requires_sorted_lengths(flat_reference, specs, example, loaded.dynamic_dims)
    output_axes = _probe_output_axes(
        flat_reference, specs, example, loaded.dynamic_dims, sorted_lengths
    )
    output_names = _output_names(len(output_axes), stream_plan)
    metadata = _metadata(loaded, example, specs, stream_plan)
    return ExportPlan(
        module=module,
        reference=flat_reference,
        specs=specs,
        output_names=output_names,
        output_axes=output_axes,
        parity_shapes=_parity_shapes(example, loaded.dynamic_dims),
        example=example,
        metadata=metadata,
        lowered=lowered,
        streaming=stream_plan,
        sorted_lengths=sorted_lengths,
    )


def _parameters(loaded: ModelSource) -> list[str]:
    if loaded.exported_program is not None:
        count = len(loaded.exported_program.graph_signature.user_inputs)
        return ["input", *(["h0", "c0"][: count - 1])]
    if isinstance(loaded.module, torch.jit.ScriptModule):
        schema = loaded.module.forward.schema
        names = [a.name for a in schema.arguments[1:] if not a.has_default_value()]
        return names or ["input"]
    return forward_parameters(loaded.module)


def _example_for(
    loaded: ModelSource, example_shape: tuple[int, int, int] | str | None, batch_first: bool | None
) -> Example:
    if isinstance(example_shape, str):
        example_shape = parse_example_shape(example_shape)
    _check_recorded_layout(loaded, batch_first)
    _warn_module_layout(loaded, batch_first)
    layout = batch_first
    if layout is None:
        layout = loaded.batch_first
    if layout is None:
        layout = _layout_from_modules(loaded.module)
    if example_shape is None and loaded.config is not None:
        example_shape = (*CHECKPOINT_EXAMPLE, loaded.config.input_size)
    if example_shape is None and loaded.example_shape is not None:
        shape = loaded.example_shape
        example_shape = shape if layout else (shape[1], shape[0], shape[2])
    if example_shape is None:
        raise InputError(
            f"{loaded.description} records no input size; pass --example-shape BxTxF "
            "(batch x time x features), for example 1x100x6"
        )
    batch, seq_len, features = example_shape
    if loaded.config is not None and features != loaded.config.input_size:
        raise InputError(
            f"example shape has {features} features, the checkpoint's model takes "
            f"{loaded.config.input_size}; pass --example-shape 1x10x{loaded.config.input_size}"
        )
    return Example(batch, seq_len, features, layout)


def _check_recorded_layout(loaded: ModelSource, batch_first: bool | None) -> None:
    """Reject a requested layout that contradicts the one the source records.

    The model of an rnnedge checkpoint always takes batch-first input. Exporting it as
    time-major would still pass parity, because PyTorch and ONNX Runtime would both read the
    batch axis as time.
    """
    if batch_first is None or loaded.batch_first is None or batch_first == loaded.batch_first:
        return
    flag = _LAYOUT_FLAGS[batch_first]
    raise InputError(
        f"{flag} contradicts {loaded.description}, which records the input layout "
        f"{_LAYOUT_SHAPES[loaded.batch_first]}; drop {flag}"
    )


def _warn_module_layout(loaded: ModelSource, batch_first: bool | None) -> None:
    """Warn when a layout flag contradicts the batch_first of the outermost nn.LSTM / nn.GRU.

    Not an error, because the model may transpose its input before the recurrent module.
    """
    if batch_first is None or loaded.batch_first is not None:
        return
    modules = find_recurrent(loaded.module)
    outermost = next(((n, m) for n, m in modules if isinstance(m, (nn.LSTM, nn.GRU))), None)
    if outermost is None:
        return
    name, module = outermost
    if bool(module.batch_first) == batch_first:
        return
    flag = _LAYOUT_FLAGS[batch_first]
    label = f"recurrent module {name!r}" if name else "recurrent module"
    logger.warning(
        "%s contradicts the model's %s, an nn.%s with batch_first=%s that takes %s input. "
        "Exporting with %s input as requested, which is right only if the model transposes "
        "its input itself",
        flag, label, type(module).__name__, module.batch_first,
        _LAYOUT_SHAPES[bool(module.batch_first)], _LAYOUT_SHAPES[batch_first],
    )  # fmt: skip


def _layout_from_modules(module: nn.Module) -> bool:
    layouts = {
        bool(m.batch_first)
        for _, m in find_recurrent(module)
        if hasattr(m, "batch_first") and not isinstance(m, (nn.LSTMCell, nn.GRUCell))
    }
    if len(layouts) == 1:
        return layouts.pop()
    logger.warning(
        "cannot tell the input layout from the model; assuming batch-major, pass "
        "--time-major if the model takes (time, batch, features)"
    )
    return True


def _fix_static_axes(
    spec: InputSpec, dynamic: tuple[bool, bool, bool], example: Example
) -> InputSpec:
    batch_axis = 0 if example.batch_first else 1
    time_axis = 1 - batch_axis
    shape = list(spec.shape)
    if not dynamic[0]:
        shape[batch_axis] = example.batch
    if not dynamic[1]:
        shape[time_axis] = example.seq_len
        logger.warning(
            "the ExportedProgram fixes the sequence length at %d; re-export it with a dynamic "
            "time axis, or export the Python module, to accept other lengths",
            example.seq_len,
        )
    return InputSpec(spec.name, spec.role, tuple(shape), spec.dtype)


def _requires_sorted_lengths(
    reference: nn.Module,
    specs: list[InputSpec],
    example: Example,
    dynamic_dims: tuple[bool, bool, bool] | None,
) -> bool:
    """Return whether `reference` rejects lengths that are not in decreasing order.

    A model that calls `pack_padded_sequence(enforce_sorted=True)` does, so its example and
    probe inputs get sorted lengths, as its parity cases do. Any other failure of this run
    is left to `_probe_output_axes` to report.
    """
    index = next((i for i, s in enumerate(specs) if s.role is InputRole.LENGTHS), None)
    if index is None:
        return False
    batch, seq_len = PROBE_SHAPES[1]
    if dynamic_dims is not None:
        batch = batch if dynamic_dims[0] else example.batch
        seq_len = seq_len if dynamic_dims[1] else example.seq_len
    if batch < 2 or seq_len < 2:
        return False  # every order of the lengths is sorted
    arrays = make_arrays(specs, batch, seq_len, np.random.default_rng(0))
    lengths = np.full(batch, seq_len, dtype=np.int64)
    lengths[0] = 1  # shorter than the next sequence, so the order is increasing there
    arrays[index] = lengths
    try:
        with torch.inference_mode():
            reference(*[torch.from_numpy(a) for a in arrays])
    except RuntimeError as exc:
        return "sorted in decreasing order" in str(exc)
    except Exception:  # whatever the user's forward raises; the probe reports it
        return False
    return False


def _probe_output_axes(
    reference: nn.Module,
    specs: list[InputSpec],
    example: Example,
    dynamic_dims: tuple[bool, bool, bool] | None,
    sorted_lengths: bool = False,
) -> list[dict[int, str]]:
    """Find each output's batch and time axes by running the model at two shapes."""
    results = []
    for batch, seq_len in PROBE_SHAPES:
        if dynamic_dims is not None:
            batch = batch if dynamic_dims[0] else example.batch
            seq_len = seq_len if dynamic_dims[1] else example.seq_len
        arrays = make_arrays(specs, batch, seq_len, np.random.default_rng(0))
        if sorted_lengths:
            arrays = sort_lengths(specs, arrays)
        try:
            with torch.inference_mode():
                outputs = reference(*[torch.from_numpy(a) for a in arrays])
        except RnnedgeError:  # rnnedge's own checks, such as an unsupported output type
            raise
        except Exception as exc:  # whatever the user's forward raises
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            shapes = ", ".join(
                f"{s.name} {list(a.shape)}" for s, a in zip(specs, arrays, strict=True)
            )
            raise InputError(
                f"the model fails on inputs {shapes}: {first[:200]}; check --example-shape "
                "and --batch-first or --time-major"
            ) from exc
        results.append((batch, seq_len, [tuple(o.shape) for o in outputs]))
    (b1, t1, first), (b2, t2, second) = results
    axes = []
    for shape1, shape2 in zip(first, second, strict=True):
        named: dict[int, str] = {}
        for axis, (size1, size2) in enumerate(zip(shape1, shape2, strict=True)):
            if size1 == b1 and size2 == b2 and b1 != b2:
                named[axis] = BATCH
            elif size1 == t1 and size2 == t2 and t1 != t2:
                named[axis] = SEQUENCE
            elif size1 != size2:
                named[axis] = f"dim{axis}"
        axes.append(named)
    return axes


def _streaming_rejected(model: nn.Module, specs: list[InputSpec]) -> str:
    """Return why --streaming cannot wrap `model`, with the state pairs to use instead.

    A state input's pair is the output of the same shape in a run at batch 2 and length 3,
    named as the export without --streaming names it.
    """
    message = (
        "--streaming needs a model whose forward takes the sequence only; this one also "
        f"takes {', '.join(s.name for s in specs[1:])}"
    )
    states = [s for s in specs if s.role in (InputRole.STATE_H, InputRole.STATE_C)]
    if not states:
        return message
    arrays = make_arrays(specs, 2, 3, np.random.default_rng(0))
    try:
        with torch.inference_mode():
            outputs = FlatOutputs(model)(*[torch.from_numpy(a) for a in arrays])
    except Exception:  # whatever the user's forward raises; the export reports it later
        outputs = ()
    names = _output_names(len(outputs), None)
    pairs = []
    for spec, array in zip(specs, arrays, strict=True):
        if spec not in states:
            continue
        match = next(
            (n for n, o in zip(names, outputs, strict=True) if tuple(o.shape) == array.shape),
            None,
        )
        pairs.append(f"--state {spec.name}={match or 'OUTPUT'}")
    return (
        f"{message}; export without --streaming, then run the model with --stream "
        f"{' '.join(pairs)}, which feeds each state output back as its input on the next call"
    )


def _output_names(count: int, stream_plan: StreamingPlan | None) -> list[str]:
    state_outputs = list(stream_plan.state_outputs) if stream_plan is not None else []
    model_outputs = count - len(state_outputs)
    names = [OUTPUT_NAME] + [f"{OUTPUT_NAME}_{i}" for i in range(1, model_outputs)]
    return names + state_outputs


def _parity_shapes(
    example: Example, dynamic_dims: tuple[bool, bool, bool] | None
) -> list[tuple[int, int]]:
    vary_batch = dynamic_dims is None or dynamic_dims[0]
    vary_time = dynamic_dims is None or dynamic_dims[1]
    shapes = []
    for batch, seq_len in PARITY_CANDIDATES:
        if vary_batch and batch == example.batch:
            continue
        if vary_time and seq_len == example.seq_len:
            continue
        shapes.append(
            (batch if vary_batch else example.batch, seq_len if vary_time else example.seq_len)
        )
    unique = list(dict.fromkeys(shapes))
    return unique[:PARITY_CASES]


def _metadata(
    loaded: ModelSource,
    example: Example,
    specs: list[InputSpec],
    stream_plan: StreamingPlan | None,
) -> ModelMetadata:
    normalization = None
    if loaded.normalization:
        mean = [float(x) for x in loaded.normalization["mean"]]
        std = [float(x) for x in loaded.normalization["std"]]
        if len(mean) != example.features or len(std) != example.features:
            raise InputError(
                f"checkpoint normalization has {len(mean)} means and {len(std)} deviations "
                f"for {example.features} features; store one per feature"
            )
        normalization = Normalization(tuple(mean), tuple(std))
    extra = {
        "source": loaded.kind.value,
        "input_roles": json.dumps({spec.name: spec.role.value for spec in specs}),
    }
    if loaded.config is not None:
        config = loaded.config
        extra.update({
            "hidden_size": str(config.hidden_size),
            "num_layers": str(config.num_layers),
            "bidirectional": str(config.bidirectional).lower(),
        })  # fmt: skip
    else:
        extra.update(_architecture(loaded.module))
    return ModelMetadata(
        layout=Layout.BATCH_MAJOR if example.batch_first else Layout.TIME_MAJOR,
        features=example.features,
        task=Task(loaded.task) if loaded.task else None,
        labels=tuple(loaded.labels),
        normalization=normalization,
        cell=cell_name(loaded.module),
        precision="fp32",
        state_pairs=stream_plan.state_pairs if stream_plan is not None else (),
        extra=extra,
    )


def _architecture(module: nn.Module) -> dict[str, str]:
    """Return the architecture metadata that a checkpoint records, for the model's nn.LSTM
    or nn.GRU.

    The dict is empty unless that module is the model's only recurrent module, because a
    model with several recurrent modules or with cells has no single size to record.
    """
    recurrent = find_recurrent(module)
    if len(recurrent) != 1 or not isinstance(recurrent[0][1], (nn.LSTM, nn.GRU)):
        return {}
    rnn = recurrent[0][1]
    keys = {
        "hidden_size": str(rnn.hidden_size),
        "num_layers": str(rnn.num_layers),
        "bidirectional": str(rnn.bidirectional).lower(),
    }
    proj_size = int(getattr(rnn, "proj_size", 0) or 0)
    if proj_size:
        keys["proj_size"] = str(proj_size)
    return keys
