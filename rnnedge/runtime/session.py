"""Batch inference over an ONNX model with a checked choice of execution provider."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from rnnedge.errors import InputError
from rnnedge.host import cpu_info
from rnnedge.runtime.external_data import check_external_data, is_ort_format
from rnnedge.runtime.feeds import constant_feed, feed_label, fill_constant
from rnnedge.runtime.inputs import (
    LENGTHS_INPUT,
    as_array,
    check_lengths,
    check_sequence_input,
    check_state_input,
    describe,
)
from rnnedge.runtime.layout import (
    BY_AXIS_NAMES,
    BY_DEFAULT,
    BY_STATE_INPUT,
    axis_kind,
    check_fixed_shape_plausible,
    decide_layout,
    state_batch_size,
)
from rnnedge.runtime.metadata import PREFIX, Layout, ModelMetadata, Task
from rnnedge.runtime.onnx_proto import parse_model
from rnnedge.runtime.options import cpu_settings, merge_options, provider_options
from rnnedge.runtime.ort_errors import input_rejection
from rnnedge.runtime.placement import Placement, read_profile
from rnnedge.runtime.providers import (
    CPU_EP,
    Provider,
    ProviderPlan,
    check_session_providers,
    plan_providers,
)
from rnnedge.runtime.state import (
    StateInput,
    StatePair,
    check_distinct_pairs,
    crossed_pairs_hint,
    find_unnamed_states,
    resolve_state_pairs,
    same_declared_shape,
    shaped_like_state,
    unnamed_states_error,
)

logger = logging.getLogger(__name__)

NONFINITE_POLICIES = ("error", "warn")
# The fix for an .ort file that cannot be read.
ORT_CONVERT_AGAIN = "convert the .onnx model again with rnnedge convert MODEL --ort"
# The maximum number of intra-op threads per logical core that a session accepts. Above
# the core count a session still starts, with a warning, because a thread sweep may go a
# step beyond it.
MAX_THREADS_PER_CORE = 4
# Values of `Session.layout_source` that name where the layout came from, beside the
# rules of `rnnedge.runtime.layout.decide_layout`.
LAYOUT_METADATA = "metadata"
LAYOUT_OPTION = "layout argument"
# The roles in `rnnedge.input_roles` of a recurrent state input, which starts at zero in
# a run that does not feed it, with or without a state pair.
STATE_ROLES = ("state_h", "state_c")


def open_model_file(path: str | os.PathLike[str]) -> Path:
    """Check that `path` names a readable file before ONNX Runtime parses it.

    The model's external-data locations are checked too: each must name a file inside
    the model's folder (see `rnnedge.runtime.external_data`).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file {str(path)!r} not found; pass the path to an .onnx file")
    if not path.is_file():
        raise InputError(f"model path {str(path)!r} is not a file; pass the path to an .onnx file")
    is_ort = path.suffix.lower() == ".ort"
    if path.stat().st_size == 0:
        fix = ORT_CONVERT_AGAIN if is_ort else "export the model again"
        raise InputError(f"model file {str(path)!r} is empty; {fix}")
    if is_ort and not starts_like_ort(path):
        if not _parses_as_onnx(path):
            # Read as ONNX protobuf, such a file would get the fix of exporting it again.
            raise InputError(
                f"{str(path)!r} is not an ONNX Runtime (.ort) model (the file identifier "
                f"'ORTM' at bytes 4 to 8 is missing); {ORT_CONVERT_AGAIN}"
            )
        # `_create_session` loads a file by its content, whatever its name.
        logger.warning(
            "%s is an ONNX model, not in the ONNX Runtime format of its .ort name; running "
            "it as ONNX (rnnedge convert MODEL --ort writes the .ort format)",
            path.name,
        )
    check_external_data(path)
    return path


def _parses_as_onnx(path: Path) -> bool:
    """Return whether the file is an ONNX protobuf model, as far as its structure shows."""
    try:
        parse_model(path.read_bytes())
    except (InputError, OSError):
        return False
    return True


class Session:
    """An ONNX Runtime session over one model, fed with validated arrays.

    Args:
        path: the `.onnx` file.
        device: a device profile or its name; its provider preference and options
            are used (the preference for `provider="auto"`).
        provider: `auto`, `cpu`, `cuda`, `tensorrt` or `arm`.
        strict_provider: raise `ProviderError` instead of warning when the session
            does not get the requested provider.
        threads: CPU threads for one operator (`intra_op_num_threads`); the device
            profile's value, or the number of physical cores, when None.
        normalize: apply the normalization statistics stored in the model's metadata
            to raw inputs.
        provider_options: options keyed by rnnedge provider name (`cpu`, `cuda`,
            `tensorrt`), laid over the device profile's key by key.
        preference: rnnedge provider names in order for `provider="auto"`, in place of
            the device profile's preference.
        feeds: constant inputs by name (a number, a list, an array, or the text of
            `--feed`), fed on every run.
        state_pairs: (state input, state output) names, as a sequence of pairs such as
            `[("h0", "hn")]` or a mapping such as `{"h0": "hn"}`, added to the pairs in the
            model's metadata; a pair replaces the metadata's pair of the same state
            input. A state input that a run does not feed starts at zero, and so does
            an input that the model's metadata gives a state role (`state_h`, `state_c`)
            but no pair.
        nonfinite: `error` rejects NaN or infinite input values; `warn` logs a warning
            and runs anyway.
        layout: the axis order of the sequence input, `batch-major` or `time-major`, for
            a model whose metadata does not record it; None infers it from the axis names
            (see `rnnedge.runtime.layout`). A value that contradicts the metadata raises
            `InputError`.
        report_placement: profile the first run to learn which provider ran each node;
            the result is in `placement` after that run.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: Any = None,
        provider: Provider | str = Provider.AUTO,
        strict_provider: bool = False,
        threads: int | None = None,
        normalize: bool = True,
        *,
        provider_options: Mapping[str, Mapping[str, Any]] | None = None,
        preference: Sequence[str] | None = None,
        feeds: Mapping[str, Any] | None = None,
        state_pairs: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        nonfinite: str = "error",
        layout: Layout | str | None = None,
        report_placement: bool = False,
    ) -> None:
        self.path = open_model_file(path)
        self.device = _resolve_device(device)
        if nonfinite not in NONFINITE_POLICIES:
            raise InputError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        self.nonfinite = nonfinite
        profile_preference: tuple[str, ...] = ()
        profile_options: dict[str, dict[str, Any]] = {}
        if self.device is not None:
            profile_preference = tuple(self.device.provider_preference)
            profile_options = {k: dict(v) for k, v in self.device.provider_options.items()}
        options = merge_options(profile_options, provider_options)
        host_cpu = cpu_info()
        settings = cpu_settings(options.get("cpu", {}), threads, host_cpu["physical_cores"] or 1)
        logical = host_cpu["logical_cores"]
        if logical and settings.intra_op_threads > MAX_THREADS_PER_CORE * logical:
            # ONNX Runtime starts every thread at session creation. With 4096 threads, run
            # was still starting after 90 s here, so a typo such as 4000 looks like a hang.
            setting = (
                f"--threads {threads}"
                if threads is not None
                else f"intra_op_num_threads {settings.intra_op_threads} in the device profile"
            )
            raise InputError(
                f"{setting} is more than {MAX_THREADS_PER_CORE} times the {logical} logical "
                f"cores of this host; pass --threads {logical} or fewer"
            )
        if logical and settings.intra_op_threads > logical:
            logger.warning(
                "%d threads exceed the %d logical cores of this host; the threads then share "
                "cores, which usually raises latency; pass --threads %d or fewer",
                settings.intra_op_threads, logical, logical,
            )  # fmt: skip
        ep_options = {
            name: provider_options_for(name, values)
            for name, values in options.items()
            if name != "cpu"
        }
        self.plan: ProviderPlan = plan_providers(
            provider,
            preference=tuple(preference) if preference is not None else profile_preference,
            options=ep_options,
            strict=strict_provider,
        )
        severity = _ort_log_severity()
        # The default logger also prints what ONNX Runtime logs while it sets up its
        # environment, such as a telemetry notice where the home folder is read-only.
        ort.set_default_logger_severity(severity)
        session_options = settings.session_options(log_severity=severity)
        self._profiling = report_placement
        if report_placement:
            session_options.enable_profiling = True
            session_options.profile_file_prefix = os.path.join(
                tempfile.gettempdir(), f"rnnedge-placement-{os.getpid()}-{id(self):x}"
            )
        self.settings = settings
        self.threads = settings.intra_op_threads
        self._session = _create_session(self.path, session_options, self.plan)
        self.providers: list[str] = self._session.get_providers()
        dropped = check_session_providers(self.plan, self.providers, strict=strict_provider)
        # Whether the session lacks a provider that was requested, or planned for `auto`.
        self.fallback = self.plan.fallback or bool(dropped)
        logger.info("session for %s uses %s", self.path.name, ", ".join(self.providers))
        self.placement: Placement | None = None
        props = self._session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props)
        self.normalize = normalize
        self.inputs = self._session.get_inputs()
        self.outputs = self._session.get_outputs()
        self._inputs_by_name = {info.name: info for info in self.inputs}
        self._output_names = [o.name for o in self.outputs]
        pairs = dict(self.metadata.state_pairs)
        given_pairs = _name_pairs(state_pairs)
        # The pairs of the `state_pairs` argument (`--state`), named by `_fed_state_error`.
        self._option_pairs = dict(given_pairs)
        check_distinct_pairs(given_pairs)
        pairs.update(given_pairs)
        self.state_pairs: tuple[StatePair, ...] = resolve_state_pairs(
            tuple(pairs.items()), self.inputs, self.outputs
        )
        crossed = crossed_pairs_hint(tuple(pairs.items()))
        if crossed:
            logger.warning("%s", crossed)
        self._data_inputs: tuple[tuple[Any, ...], list[Any]] | None = None
        self._layout_fits: tuple[Any, ...] | None = None
        self._constants: tuple[tuple[Any, ...], tuple[Any, ...], dict[str, np.ndarray]] | None = (
            None
        )
        self._unnamed_states: tuple[tuple[Any, ...], list[tuple[str, str]]] | None = None
        self.feeds = self._resolve_feeds(feeds or {})
        self.unpaired_states: tuple[StateInput, ...] = self._unpaired_states()
        if feeds and not self.data_inputs:
            raise InputError(
                f"--feed gives {', '.join(map(repr, self.feeds))}, which leaves no input "
                "for the data; remove the sequence input from --feed and pass it with --input"
            )
        self._override_warning = ""
        self._batch_major, self.layout_source = self._choose_layout(props, layout)
        # Whether --layout contradicts the layout read from the axis names or a state input.
        self._layout_overridden = bool(self._override_warning)
        # The array names an input file may have: inputs, and the outputs of state pairs,
        # which give a start state (see `given_states`).
        self._accepted_names = set(self.input_names) | {p.output for p in self.state_pairs}

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @property
    def inference_session(self) -> ort.InferenceSession:
        """The underlying ONNX Runtime session."""
        return self._session

    @property
    def primary_provider(self) -> str:
        return self.providers[0] if self.providers else CPU_EP

    @property
    def batch_major(self) -> bool:
        """Whether the sequence input is (batch, time, ...): from the metadata, the `layout`
        argument, or else inferred from the model's axis names (see `layout_source`)."""
        return self._batch_major

    @property
    def layout_guessed(self) -> bool:
        """Whether the layout is batch-major only by default, because neither the metadata,
        the `layout` argument, nor the axis names decide it."""
        return self.layout_source == BY_DEFAULT

    @property
    def layout(self) -> Layout:
        """The axis order of the sequence input, as `batch_major` gives it."""
        return Layout.BATCH_MAJOR if self._batch_major else Layout.TIME_MAJOR

    @property
    def sequence_layout(self) -> Layout | None:
        """The layout of the sequence input, the first data input, where it has rank 3,
        else None."""
        data_inputs = self.data_inputs
        if not data_inputs or len(data_inputs[0].shape or ()) != 3:
            return None
        return self.layout

    @property
    def state_input_names(self) -> list[str]:
        return [pair.input for pair in self.state_pairs]

    @property
    def data_inputs(self) -> list[Any]:
        """Inputs that the caller feeds on each run: neither state nor constant."""
        # Kept per (feeds, state pairs) so that a streaming step does not rebuild it.
        key = self._inputs_key()
        cached = self._data_inputs
        if cached is None or cached[0] != key:
            fixed = set(self.feeds) | set(self.state_input_names)
            fixed |= {state.input for state in self.unpaired_states}
            cached = (key, [info for info in self.inputs if info.name not in fixed])
            self._data_inputs = cached
        return list(cached[1])

    def describe_layout(self, data: np.ndarray | Mapping[str, Any]) -> str | None:
        """Describe how a run reads the sequence input in `data` and where that layout came
        from, such as "input x: (3, 20, 8) read as (time, batch, features), from the axis
        names".

        Returns None unless the sequence input, the first data input, is an array of
        rank 3 for an input declared with rank 3.
        """
        if self.sequence_layout is None:
            return None
        name = self.data_inputs[0].name
        array = data if isinstance(data, np.ndarray) else data.get(name)
        if not isinstance(array, np.ndarray) or array.ndim != 3:
            return None
        axes = "(batch, time, features)" if self.batch_major else "(time, batch, features)"
        how = {
            BY_DEFAULT: "by default: the axis names do not decide it; pass --layout to set it",
            LAYOUT_OPTION: "as --layout sets it",
            LAYOUT_METADATA: "as recorded in the model",
            BY_AXIS_NAMES: "from the axis names",
            BY_STATE_INPUT: "from the state's batch axis",
        }[self.layout_source]
        return f"input {name}: {tuple(array.shape)} read as {axes}, {how}"

    def _inputs_key(self) -> tuple[Any, ...]:
        return (tuple(self.feeds), self.state_pairs, self.unpaired_states)

    def unnamed_state_inputs(self) -> list[tuple[str, str]]:
        """Find the data inputs that look like recurrent states but are neither paired nor fed.

        Such an input is a float input of rank 3 shaped like a state, [n, batch, hidden]
        with n and hidden fixed, for which an output of the same shape and type exists (see
        `rnnedge.runtime.state.find_unnamed_states`). Returns (input, likely output) pairs.
        """
        key = self._inputs_key()
        cached = self._unnamed_states
        if cached is None or cached[0] != key:
            paired = [pair.output for pair in self.state_pairs]
            cached = (key, find_unnamed_states(self.data_inputs, self.outputs, paired))
            self._unnamed_states = cached
        return list(cached[1])

    def check_unnamed_states(self) -> None:
        """Raise InputError naming the inputs that `unnamed_state_inputs` finds, and the fix."""
        found = self.unnamed_state_inputs()
        if found:
            raise unnamed_states_error(found)

    def constant_feeds(
        self, batch: int, batch_fix: str = "give an input of {batch} sequences"
    ) -> dict[str, np.ndarray]:
        """Return the constant inputs (`feeds`) for a run of `batch` sequences.

        A one-value constant for an input of higher rank fills that input's shape, with
        `batch` on its one dynamic axis (see `rnnedge.runtime.feeds.fill_constant`).

        Args:
            batch_fix: the other fix named when an array for an input shaped like a state
                has another batch than `batch`; `{batch}` becomes the array's batch.

        Raises:
            InputError: a constant for an input shaped like a state [n, batch, hidden]
                has another batch on axis 1.
        """
        # Kept per batch, because a stream prepares every chunk with the same constants. The
        # key keeps the values themselves, compared by identity, so a replaced value misses.
        key = (batch, batch_fix, tuple(self.feeds))
        values = tuple(self.feeds.values())
        cached = self._constants
        if (
            cached is not None
            and cached[0] == key
            and all(old is new for old, new in zip(cached[1], values, strict=True))
        ):
            return dict(cached[2])
        constants = {}
        for name, value in self.feeds.items():
            info = self._inputs_by_name[name]
            filled = fill_constant(value, info.shape, batch)
            if shaped_like_state(info) and filled.ndim == 3 and filled.shape[1] != batch:
                fix = batch_fix.format(batch=filled.shape[1])
                raise InputError(
                    f"--feed {name} has shape {list(filled.shape)}, for a batch of "
                    f"{filled.shape[1]}, but the run has a batch of {batch}; give one value "
                    f"(such as --feed {name}=0), which fills any batch, or {fix}"
                )
            constants[name] = filled
        self._constants = (key, values, constants)
        return dict(constants)

    def zero_states(self, batch: int) -> dict[str, np.ndarray]:
        """Return a zero value for every state input, paired or not, for `batch` sequences."""
        states = (*self.state_pairs, *self.unpaired_states)
        return {state.input: state.zeros(batch) for state in states}

    def prepare(
        self, data: np.ndarray | Mapping[str, np.ndarray], source: str = "input"
    ) -> dict[str, np.ndarray]:
        """Validate and normalize inputs; return the feed for `InferenceSession.run`.

        Constant inputs come from `feeds`. A state input starts from the array that `data`
        gives for it (see `given_states`), checked against the state's shape for the batch
        of the first data input, and else at zero.
        """
        feed = self.prepare_inputs(data, source)
        batch = self.batch_size(feed)
        given = self.given_states(data, source) if isinstance(data, Mapping) else {}
        for state in (*self.state_pairs, *self.unpaired_states):
            if state.input in given:
                key, array = given[state.input]
                feed[state.input] = self.check_state(array, state, batch, f"{source}[{key}]")
            else:
                feed[state.input] = state.zeros(batch)
        return feed

    def given_states(
        self, data: Mapping[str, Any], source: str = "the input", warn: bool = True
    ) -> dict[str, tuple[str, Any]]:
        """Find the start states in `data`: (name in `data`, array) by state input name.

        A paired state may be given under its state input name or under its output name,
        as a run's outputs hold it, so that a later run resumes from an earlier run's
        outputs. Where `data` gives some states but not all, a warning names `source` and
        the state inputs that start at zero, because a resumed run then silently differs
        from one that continues.
        """
        found: dict[str, tuple[str, Any]] = {}
        for state in (*self.state_pairs, *self.unpaired_states):
            names = [state.input]
            if isinstance(state, StatePair):
                names.append(state.output)
            keys = [name for name in names if name in data]
            if len(keys) > 1:
                raise InputError(
                    f"the input gives both {keys[0]!r} and {keys[1]!r}, which start the same "
                    f"state input {state.input!r}; give only one of them"
                )
            if keys:
                found[state.input] = (keys[0], data[keys[0]])
        if warn:
            self.warn_partial_states(found, source)
        return found

    def warn_partial_states(self, found: Mapping[str, tuple[str, Any]], source: str) -> None:
        """Warn where `found` (from `given_states`) gives some start states but not all."""
        states = (*self.state_pairs, *self.unpaired_states)
        left = [state.input for state in states if state.input not in found]
        if found and left:
            logger.warning(
                "%s gives start states %s but none for the state %s %s, which %s at zero; "
                "give every state output of the earlier run to continue it",
                source, ", ".join(key for key, _ in found.values()),
                "input" if len(left) == 1 else "inputs", ", ".join(left),
                "starts" if len(left) == 1 else "start",
            )  # fmt: skip

    def check_state(
        self, array: Any, state: StateInput, batch: int | None, source: str
    ) -> np.ndarray:
        """Check a start state for `batch` sequences (None: not known yet); return the array
        to feed."""
        shape = state.shape_for(batch) if batch is not None else state.shape_for_unknown_batch()
        return check_state_input(
            array, state.input, shape, state.ort_type, source, self.nonfinite, batch
        )

    def prepare_inputs(
        self,
        data: np.ndarray | Mapping[str, np.ndarray],
        source: str = "input",
        any_length: bool = False,
    ) -> dict[str, np.ndarray]:
        """Validate and normalize the data inputs and add the constant inputs; no state.

        With `any_length`, a rank-3 input of a fixed time size takes any number of steps,
        for a stream that checks each chunk against that size instead.
        """
        data_inputs = self.data_inputs
        if not isinstance(data, np.ndarray | Mapping):
            data = as_array(data, source)
        if isinstance(data, np.ndarray) and len(data_inputs) != 1 and data_inputs:
            self._check_missing_states({data_inputs[0].name})
        elif not isinstance(data, np.ndarray) and any(i.name not in data for i in data_inputs):
            self._check_missing_states(data)
        if isinstance(data, np.ndarray):
            if len(data_inputs) != 1:
                names = ", ".join(info.name for info in data_inputs) or "none"
                others = [info.name for info in data_inputs[1:]]
                raise InputError(
                    f"the model has {len(data_inputs)} inputs to feed ({names}), but the "
                    "input is one array"
                    + _missing_hint(
                        others,
                        "pass an .npz file with one array per input name",
                        dict(self.unnamed_state_inputs()),
                    )
                )
            data = {data_inputs[0].name: data}
        unknown = sorted(set(data) - self._accepted_names)
        missing = [info.name for info in data_inputs if info.name not in data]
        if unknown or missing:
            found = [f"missing {missing}"] if missing else []
            found += [f"unexpected {unknown}"] if unknown else []
            raise InputError(
                f"{source} arrays {sorted(data)} do not match the model inputs "
                f"{self.input_names}: {', '.join(found)}"
                + _mismatch_hint(
                    missing, unknown, data_inputs[0].name, dict(self.unnamed_state_inputs())
                )
            )
        feed: dict[str, np.ndarray] = {}
        for index, info in enumerate(data_inputs):
            label = source if len(data_inputs) == 1 else f"{source}[{info.name}]"
            shape = info.shape
            if any_length and len(shape or ()) == 3:
                shape = list(shape)
                shape[1 if self.batch_major else 0] = None
            try:
                array = check_sequence_input(
                    data[info.name], info.name, shape, info.type, label,
                    nonfinite=self.nonfinite, batch_first=self.batch_major,
                )  # fmt: skip
            except InputError as exc:
                if index == 0 and not any_length:
                    raise self._fixed_length_error(exc, data[info.name], shape) from exc
                raise
            if index == 0:
                self._check_layout_once(array, label, np.shape(data[info.name]))
                array = self._normalize(array)
            feed[info.name] = array
        if len(data_inputs) > 1:
            self._check_state_batches(feed, data_inputs, source)
        self._check_lengths(feed, data_inputs, source)
        if self.feeds:
            twice = sorted(set(self.feeds) & set(data))
            if twice:
                raise InputError(
                    f"input {twice[0]!r} is given twice, by {source} and as a constant "
                    f"(--feed {twice[0]}); remove it from one of them"
                )
            feed.update(self.constant_feeds(self.batch_size(feed)))
        return feed

    def fixed_step_outputs(self) -> dict[str, int]:
        """Find the per-step outputs with a fixed time size: the size by output name.

        Such an output has rank 3, a fixed size on the time axis and, on the batch axis,
        the sequence input's batch axis name, a batch name or its fixed batch size. An
        output of a state input's declared shape counts as a state, not per-step.
        """
        if not self.data_inputs:
            return {}
        sequence = list(self.data_inputs[0].shape or ())
        if len(sequence) != 3:
            return {}
        batch_axis, time_axis = (0, 1) if self.batch_major else (1, 0)
        state_outputs = {pair.output for pair in self.state_pairs}
        batch_in = sequence[batch_axis]
        # A state's declared shape, from a pair or from any input besides the sequence (a
        # state input without a pair, or one fed as a constant).
        state_shapes = [pair.shape for pair in self.state_pairs]
        state_shapes += [list(info.shape or ()) for info in self.inputs[1:]]
        found = {}
        for info in self.outputs:
            shape = list(info.shape or ())
            if info.name in state_outputs or len(shape) != 3:
                continue
            steps, batch_out = shape[time_axis], shape[batch_axis]
            if not (isinstance(steps, int) and steps > 0):
                continue
            if any(same_declared_shape(shape, state) for state in state_shapes):
                continue
            if batch_out == batch_in or axis_kind(batch_out) == "batch":
                found[info.name] = steps
        return found

    def check_output_steps(
        self,
        feed: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        source: str,
        option: str | None = None,
    ) -> None:
        """Raise InputError where an output that declares a fixed number of time steps
        returned that number for an input of another length.

        torch's dynamo exporter can fix a Reshape to the example's length while it leaves
        the input's time axis dynamic. ONNX Runtime then runs another length and returns
        the steps folded into the batch axis. A declared size that the graph does not keep
        to (the output has the input's length) passes.

        Args:
            option: the option that sets the length, such as "--seq-len", named as the fix
                in place of the input's length.
        """
        if self._layout_overridden:
            # --layout contradicts the axis names, so the declared output axes, read in that
            # layout, tell nothing about folded steps.
            return
        fixed = self.fixed_step_outputs()
        sequence = feed.get(self.data_inputs[0].name) if self.data_inputs else None
        if not fixed or sequence is None or sequence.ndim != 3:
            return
        time_axis, batch_axis = (1, 0) if self.batch_major else (0, 1)
        length, batch = sequence.shape[time_axis], sequence.shape[batch_axis]
        for name, steps in fixed.items():
            shape = outputs[name].shape
            # Folded steps: the fixed time size came back, and the rest of the steps went
            # into the batch axis.
            folded = len(shape) == 3 and shape[time_axis] == steps and shape[batch_axis] != batch
            if length == steps or not folded:
                continue
            declared = next(list(o.shape) for o in self.outputs if o.name == name)
            fix = f"pass inputs of {steps} time steps"
            if option is not None:
                fix = f"pass {option} {steps}"
            elif self.state_pairs:
                fix += f", or stream a longer input with --stream --chunk {steps}"
            raise InputError(
                f"{source} has {length} time steps, but output {name!r} of {self.path.name}, "
                f"declared {declared}, came back with shape {tuple(outputs[name].shape)}: "
                f"the graph fixes {steps} time steps per call although its input takes any "
                f"length; {fix}"
            )

    def _fixed_length_error(
        self, error: InputError, given: Any, shape: Sequence[Any] | None
    ) -> InputError:
        """Add the streaming fix to a shape error on the time axis of a model that fixes
        the number of steps per call and carries its state, else return `error`."""
        dims = list(shape or ())
        time_axis = 1 if self.batch_major else 0
        length = np.shape(given)[time_axis] if np.ndim(given) == 3 else None
        if len(dims) != 3 or not self.state_pairs or length is None:
            return error
        steps = dims[time_axis]
        if not (isinstance(steps, int) and steps > 0) or length == steps:
            return error
        fix = f"or run it {steps} steps at a time with --stream --chunk {steps}"
        if length % steps:
            fix += f" after trimming or padding it to a multiple of {steps} steps"
        return InputError(f"{error}; {fix}, which carries the state between calls")

    def check_layout(
        self, data: np.ndarray | Mapping[str, np.ndarray], source: str = "input"
    ) -> None:
        """Run the layout checks of `prepare_inputs` on the sequence array in `data` alone.

        A stream runs them before it checks the chunk size, because a wrong layout also
        puts the fixed time size of a model on the wrong axis. Arrays that are not of
        rank 3 are left to `prepare_inputs`, which adds their batch axis first.
        """
        data_inputs = self.data_inputs
        if not data_inputs:
            return
        name = data_inputs[0].name
        array = data if isinstance(data, np.ndarray) else data.get(name)
        if not isinstance(array, np.ndarray) or array.ndim != 3:
            return
        label = source if len(data_inputs) == 1 else f"{source}[{name}]"
        self._check_layout_once(array, label, array.shape)

    def _check_layout_once(
        self, sequence: np.ndarray, label: str, given_shape: tuple[int, ...]
    ) -> None:
        # The layout checks depend on the shape alone, so a stream of chunks of one shape
        # checks it once.
        fitted = (sequence.shape, self._inputs_key())
        if fitted != self._layout_fits:
            self.check_layout_decided(sequence, label, given_shape)
            self._check_layout_fits(sequence, label)
            self._layout_fits = fitted

    def check_layout_decided(
        self, sequence: np.ndarray, label: str, given_shape: tuple[int, ...] | None = None
    ) -> None:
        """Raise InputError where the layout is batch-major only by default, a state's batch
        comes from the batch axis, and the sequence array has other sizes on axes 0 and 1.

        ONNX Runtime would otherwise report the state's batch from inside the recurrent
        node, as an internal error.

        Args:
            given_shape: the shape of the array as the caller gave it, where that is of
                rank 2, one sequence to which `sequence` added a batch axis of 1.
        """
        if not self.layout_guessed or sequence.ndim != 3:
            return
        check_fixed_shape_plausible(
            self.path.name, self.data_inputs[0].name, list(self.data_inputs[0].shape or ())
        )
        states = self._batched_state_names()
        if not states or sequence.shape[0] == sequence.shape[1]:
            return
        state = f"State input {states[0]!r} takes a state for the batch"
        fix = "pass --layout batch-major or --layout time-major"
        if given_shape is not None and len(given_shape) == 2:
            raise InputError(
                f"{label} has shape {tuple(given_shape)}, one sequence of {given_shape[0]} "
                "time steps, which runs as a batch of 1. The model records no layout and its "
                "axis names do not decide it, so the batch axis may go before the time axis "
                f"(batch-major) or after it (time-major). {state}; {fix}"
            )
        first, second = sequence.shape[:2]
        raise InputError(
            f"{label} has shape {tuple(sequence.shape)}, a batch of {first} on axis 0 or of "
            f"{second} on axis 1: the model records no layout, and its axis names do not "
            f"decide it. {state}; {fix}"
        )

    def _check_layout_fits(self, sequence: np.ndarray, label: str) -> None:
        """Raise InputError where the layout from `--layout` or the axis names reads the
        batch from the axis of `sequence` that a state input's declared batch axis does not
        match, and the other axis does.

        The zero state would take the batch of the wrong axis, and ONNX Runtime would report
        the mismatch from inside the recurrent node, as an internal error.
        """
        if self.layout_source not in (LAYOUT_OPTION, BY_AXIS_NAMES) or sequence.ndim != 3:
            return
        declared = self.data_inputs[0].shape or ()
        axis = 0 if self.batch_major else 1
        for name in self._batched_state_names():
            state_shape = self._inputs_by_name[name].shape or ()
            batch = state_batch_size(declared, sequence.shape, state_shape)
            if batch is None or sequence.shape[axis] == batch or sequence.shape[1 - axis] != batch:
                continue
            other = Layout.TIME_MAJOR if self.batch_major else Layout.BATCH_MAJOR
            how = "--layout" if self.layout_source == LAYOUT_OPTION else "the axis names"
            raise InputError(
                f"{label} has shape {tuple(sequence.shape)}, read {self.layout.value} by "
                f"{how} as a batch of {sequence.shape[axis]}, but state input {name!r} "
                f"{list(state_shape)} takes a batch of {batch}, which is axis {1 - axis}; "
                f"pass --layout {other.value}"
            )
        if self._override_warning:
            logger.warning("%s", self._override_warning)
            self._override_warning = ""

    def check_layout_fits(
        self, sequence: np.ndarray, label: str, *, warn_override: bool = True
    ) -> None:
        """Run the check of `prepare_inputs` that the layout reads the batch from the axis
        that the state inputs match, for a caller that builds its own feed.

        Raises the InputError of `_check_layout_fits`. Where the check passes, it logs the
        warning that --layout overrides the layout read from the model, unless
        `warn_override` is False, for a caller that has warned about this model already.
        """
        if not warn_override:
            self._override_warning = ""
        self._check_layout_fits(sequence, label)

    def _batched_state_names(self) -> list[str]:
        """Name the state inputs whose batch a run takes from the sequence input: paired,
        unpaired, constant-filled or given in the input file."""
        names = [state.input for state in (*self.state_pairs, *self.unpaired_states)]
        names += [name for name in self.feeds if shaped_like_state(self._inputs_by_name[name])]
        names += [name for name, _ in self.unnamed_state_inputs()]
        return names

    def _check_missing_states(self, given: Collection[str]) -> None:
        """Raise the error of `check_unnamed_states` where every data input that `given`
        lacks looks like a recurrent state."""
        missing = [info.name for info in self.data_inputs if info.name not in given]
        states = dict(self.unnamed_state_inputs())
        if missing and all(name in states for name in missing):
            raise unnamed_states_error([(name, states[name]) for name in missing])

    def _check_state_batches(
        self, feed: Mapping[str, np.ndarray], data_inputs: Sequence[Any], source: str
    ) -> None:
        """Check that an input given for an unnamed state has the batch of the sequence
        input, which ONNX Runtime would only report from inside the recurrent node."""
        batch = self.batch_size(feed)
        first = data_inputs[0].name
        for name, _ in self.unnamed_state_inputs():
            array = feed[name]
            if array.ndim != 3 or array.shape[1] == batch:
                continue
            expected = (array.shape[0], batch, array.shape[2])
            axis = 0 if self.batch_major else 1
            raise InputError(
                f"{source}[{name}] has shape {tuple(array.shape)}, a state for a batch of "
                f"{array.shape[1]}, but {source}[{first}] of shape {tuple(feed[first].shape)} "
                f"has a batch of {batch} on axis {axis} ({self.layout.value}); give {name} "
                f"the shape {expected}"
            )

    def _check_lengths(
        self, feed: Mapping[str, np.ndarray], data_inputs: Sequence[Any], source: str
    ) -> None:
        lengths = feed.get(LENGTHS_INPUT)
        if lengths is None or not np.issubdtype(lengths.dtype, np.integer):
            return
        sequence = feed[data_inputs[0].name]
        if data_inputs[0].name == LENGTHS_INPUT or sequence.ndim != 3:
            return
        time_axis = 1 if self.batch_major else 0
        check_lengths(
            lengths,
            self.batch_size(feed),
            int(sequence.shape[time_axis]),
            f"{source}[{LENGTHS_INPUT}]",
        )

    def batch_size(self, feed: Mapping[str, np.ndarray]) -> int:
        """The batch size of the first data input in `feed` (1 for a model without one)."""
        data_inputs = self.data_inputs
        if not data_inputs:
            return 1
        first = feed[data_inputs[0].name]
        axis = 0 if self.batch_major or first.ndim < 2 else 1
        return int(first.shape[axis])

    def run(
        self, data: np.ndarray | Mapping[str, np.ndarray], source: str = "input"
    ) -> dict[str, np.ndarray]:
        """Run the model on a batch; return every output by name."""
        feed = self.prepare(data, source)
        outputs = self.run_prepared(feed)
        self.check_output_steps(feed, outputs, source)
        return outputs

    def run_prepared(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on an already prepared feed (as from `prepare`), with no further checks."""
        # The hot path of profiling and benchmarks: no copies beyond what ORT returns.
        try:
            values = self._session.run(None, feed if isinstance(feed, dict) else dict(feed))
        except Exception as exc:
            raise (input_rejection(exc, self.path.name) or exc) from exc
        if self._profiling:
            self.finish_placement()
        return dict(zip(self._output_names, values, strict=True))

    def finish_placement(self) -> Placement | None:
        """End the profiling of the first run and read the node placement from it."""
        if not self._profiling:
            return self.placement
        self._profiling = False
        path = Path(self._session.end_profiling())
        try:
            self.placement = read_profile(path)
        finally:
            path.unlink(missing_ok=True)
        # Not logged here: `rnnedge run` prints `placement.describe()` on stdout.
        return self.placement

    def predict(self, data: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """Return the first output, or class labels for a classification model."""
        output = self.run(data)[self.output_names[0]]
        if self.metadata.task is Task.CLASSIFICATION:
            index = output.argmax(axis=-1)
            if self.metadata.labels:
                return np.asarray(self.metadata.labels)[index]
            return index
        return output

    def _normalize(self, array: np.ndarray) -> np.ndarray:
        stats = self.metadata.normalization
        if not self.normalize or stats is None:
            return array
        if array.shape[-1] != len(stats.mean):
            raise InputError(
                f"the model's normalization covers {len(stats.mean)} features, the input "
                f"has {array.shape[-1]}"
            )
        mean = np.asarray(stats.mean, dtype=array.dtype)
        std = np.asarray(stats.std, dtype=array.dtype)
        logger.debug("normalizing input %s", describe(array))
        return np.ascontiguousarray((array - mean) / std)

    def _resolve_feeds(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            try:
                feeds = dict(feeds)
            except (TypeError, ValueError) as exc:
                raise InputError(
                    "feeds takes constant inputs by name, such as {'gain': 0.5} or "
                    f"[('gain', 0.5)]; got {feeds!r}"
                ) from exc
        by_name = {info.name: info for info in self.inputs}
        sequence = self._sequence_input_name() if feeds else None
        resolved = {}
        for name, value in feeds.items():
            if name not in by_name:
                raise InputError(
                    f"--feed names {name!r}, which is not an input of the model (inputs: "
                    f"{', '.join(by_name)})"
                )
            if name in self.state_input_names:
                raise self._fed_state_error(name, value)
            if name == sequence:
                raise InputError(
                    f"{name!r} is the sequence input; it comes from --input, not --feed"
                )
            info = by_name[name]
            resolved[name] = constant_feed(
                value, name, info.shape, info.type, nonfinite=self.nonfinite
            )
        return resolved

    def _fed_state_error(self, name: str, value: Any) -> InputError:
        """Build the error for a constant given to a paired state input, naming the ways
        to start that state from other values than zero."""
        output = next(pair.output for pair in self.state_pairs if pair.input == name)
        start = (
            f"to start it from other values, give array {name!r} in an .npz input file, "
            "with or without --stream"
        )
        prefix = f"{feed_label(name, value)}: input {name!r} is a state input"
        if self._option_pairs.get(name) == output:
            return InputError(
                f"{prefix}, paired by --state {name}={output}, so it starts at zero; {start}, "
                f"or drop --state {name}={output} to give it as a constant with --feed "
                "(without --stream)"
            )
        return InputError(
            f"{prefix}, paired with output {output!r} in the model's metadata, so it starts "
            f"at zero; {start}"
        )

    def _sequence_input_name(self) -> str | None:
        """Name the sequence input: by its role in the metadata, or else the first input
        that is not a state and has a symbolic time axis (`sequence`, `seq_len`, `time`,
        `steps`)."""
        roles = self.metadata.input_roles
        named = [name for name, role in roles.items() if role == "sequence"]
        if named:
            return named[0]
        paired = set(self.state_input_names)
        for info in self.inputs:
            if info.name in paired or roles.get(info.name) in STATE_ROLES:
                continue
            if any(axis_kind(dim) == "time" for dim in info.shape or ()):
                return info.name
        return None

    def _choose_layout(
        self, props: Mapping[str, str], layout: Layout | str | None
    ) -> tuple[bool, str]:
        """Return whether the sequence input is batch-major, and where that came from:
        `LAYOUT_METADATA`, `LAYOUT_OPTION` or the rule of `decide_layout` that decided."""
        requested = _parse_layout(layout)
        if f"{PREFIX}layout" in props:
            recorded = self.metadata.layout
            if requested is not None and requested is not recorded:
                raise InputError(
                    f"--layout {requested.value} contradicts {self.path.name}, whose rnnedge "
                    f"metadata records {recorded.value}; drop --layout for this model"
                )
            logger.debug("%s: %s layout recorded in the model", self.path.name, recorded.value)
            return recorded is Layout.BATCH_MAJOR, LAYOUT_METADATA

        data_inputs = self.data_inputs
        if not data_inputs:
            batch_major = requested is not Layout.TIME_MAJOR
            return batch_major, BY_DEFAULT if requested is None else LAYOUT_OPTION
        states = [self._inputs_by_name[name].shape for name in self._batched_state_names()]
        # Under --layout, the inferred layout matters only where it differs, which the
        # override warning reports, so its rule is not logged.
        decided = decide_layout(data_inputs[0].shape, states, self.path.name, log=requested is None)
        if requested is None:
            return not decided.time_major, decided.rule

        logger.debug("%s: %s layout from --layout", self.path.name, requested.value)
        if not decided.guessed and decided.time_major != (requested is Layout.TIME_MAJOR):
            evidence = "the axis names" if decided.rule == BY_AXIS_NAMES else "a state input"
            # Logged by the first run that passes `_check_layout_fits`, so that a run that
            # the override breaks prints only its error.
            self._override_warning = (
                f"--layout {requested.value} overrides the "
                f"{'time-major' if decided.time_major else 'batch-major'} layout read from "
                f"{evidence} of {self.path.name}"
            )
        return requested is Layout.BATCH_MAJOR, LAYOUT_OPTION

    def _unpaired_states(self) -> tuple[StateInput, ...]:
        """Collect the inputs that the metadata gives a state role but that have no state
        pair and no --feed value."""
        roles = self.metadata.input_roles
        paired_or_fed = set(self.state_input_names) | set(self.feeds)
        return tuple(
            StateInput(input=info.name, shape=tuple(info.shape), ort_type=info.type)
            for info in self.inputs
            if roles.get(info.name) in STATE_ROLES and info.name not in paired_or_fed
        )


def provider_options_for(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check the options of a CUDA or TensorRT provider; others pass through unchanged."""
    if name in ("cuda", "tensorrt"):
        return provider_options(name, values)
    return dict(values)


def _parse_layout(layout: Layout | str | None) -> Layout | None:
    if layout is None or isinstance(layout, Layout):
        return layout
    try:
        return Layout(layout)
    except ValueError:
        choices = " or ".join(item.value for item in Layout)
        raise InputError(f"layout must be {choices}, got {layout!r}") from None


def _mismatch_hint(
    missing: Sequence[str], unknown: Sequence[str], sequence: str, states: Mapping[str, str]
) -> str:
    """Name the fixes for an input file whose arrays miss model inputs or have others.

    Args:
        sequence: the sequence input, which only the input file can give.
        states: likely state outputs by input name, for the inputs that look like
            recurrent states.
    """
    extra = ", ".join(map(repr, unknown))
    if not missing:
        them = "it" if len(unknown) == 1 else "them"
        return f"; remove {extra} from the .npz file, or rename {them} to a model input name"
    others = [name for name in missing if name != sequence]
    if not unknown:
        return _missing_hint(others, f"add {', '.join(missing)} to the .npz file", states)
    if len(unknown) == 1 and len(missing) == 1:
        fix = f"rename {extra} to {missing[0]!r} in the .npz file"
    else:
        fix = f"rename or remove {extra} and add {', '.join(missing)} in the .npz file"
    return _missing_hint(others, fix, states)


def _missing_hint(missing: Sequence[str], fix: str, states: Mapping[str, str]) -> str:
    """Name the fixes for inputs that a run leaves out: `fix` for the input file, or an
    option for each kind of input that the file need not give.

    Args:
        missing: the inputs left out, other than the sequence input.
        states: likely state outputs by input name; only these inputs are offered
            `--state`.
    """
    fixes = [fix]
    constants = [name for name in missing if name not in states]
    recurrent = [name for name in missing if name in states]
    if constants:
        fixes.append(f"for {', '.join(constants)} use --feed NAME=VALUE (a constant input)")
    if recurrent:
        pairs = " ".join(f"--state {name}={states[name]}" for name in recurrent)
        fixes.append(
            f"for {', '.join(recurrent)} use {pairs} (a recurrent state, which then starts "
            "at zero) or --feed NAME=VALUE"
        )
    return "; " + ", or ".join(fixes)


# The level of the rnnedge logger, below DEBUG, at which ONNX Runtime's own info and
# verbose logs are shown (`-vvv`). At -vv they would bury rnnedge's debug lines, because
# ONNX Runtime logs every graph transformation and allocation of a session.
ORT_LOG_LEVEL = logging.DEBUG - 5


def _ort_log_severity() -> int:
    """ONNX Runtime's log severity for the rnnedge logger's level.

    Its warnings show from INFO (`-v`) on, and its info and verbose logs only from
    `ORT_LOG_LEVEL` (`-vvv`) on. rnnedge raises every ONNX Runtime error itself as one
    line, so ONNX Runtime's own error log (severity 3) would print the same failure twice.
    """
    package = logging.getLogger("rnnedge")
    if package.isEnabledFor(ORT_LOG_LEVEL):
        return 0
    if package.isEnabledFor(logging.INFO):
        return 2
    return 4


def _create_session(
    path: Path, options: ort.SessionOptions, plan: ProviderPlan
) -> ort.InferenceSession:
    set_load_format(options, path)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=plan.as_ort_list())
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if starts_like_ort(path):
            raise InputError(
                f"{str(path)!r} {ort_load_problem(text)} (onnxruntime: {text[:160]}); "
                f"{ORT_CONVERT_AGAIN}"
            ) from exc
        if "protobuf" in text.lower() or "INVALID_PROTOBUF" in text or "Load model" in text:
            raise InputError(
                f"{str(path)!r} is not a valid ONNX model ({text[:160]}); export it with "
                "rnnedge export"
            ) from exc
        if "layout" in text and "not supported" in text:
            lowered = text.lower()
            operator = "RNN"
            if "gru" in lowered:
                operator = "GRU"
            elif "lstm" in lowered:
                operator = "LSTM"
            raise InputError(
                f"{str(path)!r} has a {operator} node with layout=1 (batch-major), which "
                f"ONNX Runtime {ort.__version__} rejects; re-export it with layout=0 "
                "(rnnedge export and torch.onnx.export both write layout=0)"
            ) from exc
        raise InputError(f"onnxruntime cannot load {str(path)!r}: {text[:300]}") from exc


def _name_pairs(pairs: Any) -> list[tuple[str, str]]:
    """Return the `state_pairs` argument as a list of (state input, state output) names.

    Raises:
        InputError: `pairs` is neither a mapping of names nor a sequence of name pairs.
    """
    if pairs is None:
        return []
    if isinstance(pairs, Mapping):
        items = list(pairs.items())
    elif isinstance(pairs, str | bytes) or not isinstance(pairs, Sequence):
        items = [pairs]
    else:
        items = list(pairs)
    for item in items:
        if (
            isinstance(item, str | bytes)
            or not isinstance(item, Sequence)
            or len(item) != 2
            or not all(isinstance(name, str) for name in item)
        ):
            raise InputError(
                f"state_pairs takes (state input, state output) name pairs, such as "
                f"[('h0', 'hn')] or {{'h0': 'hn'}}; got {item!r} in {pairs!r}"
            )
    return [(str(a), str(b)) for a, b in items]


def set_load_format(options: ort.SessionOptions, path: str | os.PathLike[str]) -> None:
    """Have a session read the model at `path` in the format of its content.

    ONNX Runtime picks the format by the file name's suffix (`.ort` or not), so without
    this an `.ort` model under another name, or an ONNX model named `.ort`, fails to load.
    """
    options.add_session_config_entry(
        "session.load_model_format", "ORT" if starts_like_ort(Path(path)) else "ONNX"
    )


def starts_like_ort(path: Path) -> bool:
    """Return whether the file at `path` begins like an ONNX Runtime format model."""
    try:
        with open(path, "rb") as handle:
            return is_ort_format(handle.read(8))
    except OSError:
        return False


def ort_load_problem(ort_text: str) -> str:
    """Describe a file with the .ort identifier that ONNX Runtime fails to load.

    ONNX Runtime reports a damaged or truncated .ort file only as a failed verification of
    its flatbuffer. Any other failure, such as a format version from another ONNX Runtime
    release, is described by ONNX Runtime's own text.
    """
    if "verification failed" in ort_text:
        return "is a damaged or truncated .ort file"
    return f"is an .ort file that onnxruntime {ort.__version__} cannot load"


def _resolve_device(device: Any) -> Any:
    if device is None or not isinstance(device, str):
        return device
    from rnnedge.profiling.catalog import load_device

    return load_device(device)
