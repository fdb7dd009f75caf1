"""The bad-input corpus: every command, fed what it must reject, fails the same way.

Each case is a command line with placeholders, the exit code the README documents (2 for
a usage error, 3 for a failed check, 5 for a model that cannot be exported) and fragments
of the one-line message: the value at fault and the fix. Every case also asserts that
stderr contains exactly one `error: ` line (log warnings aside), that there is no
traceback without -v, that stdout is empty unless the command reports findings there,
and that no file under the test's folders, the read-only mount or the full disk was
created, changed or removed.

The cases of BAD_INPUT in tests/test_cli.py are not repeated here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnedge.cli import cli, main
from rnnedge.export import export_model
from rnnedge.runtime.ort_format import convert_to_ort
from tests.conftest import FEATURES
from tests.test_cli import BAD_INPUT as CLI_BAD_INPUT
from tests.test_runtime import FOREIGN_HIDDEN, export_foreign_gru

CAN_MOUNT = os.geteuid() == 0 and shutil.which("mount") is not None
ROOT_ONLY = pytest.mark.skipif(not CAN_MOUNT, reason="mounting a tmpfs needs root and mount")
# Fragments of torch's own error text and terminal colours, which rnnedge's one-line
# errors replace with their own words.
TORCH_PROSE = ("In PyTorch 2.6", "weights_only` argument", "trust the source of the checkpoint",
               "high likelihood", "\x1b[")  # fmt: skip
# The fast profile options for cases that get as far as measuring.
QUICK = "--runs 2 --warmup 0 --operators 0"


@dataclass(frozen=True)
class Case:
    """One command line and the failure it must produce."""

    args: tuple[str, ...]
    code: int
    message: tuple[str, ...]
    stdout: tuple[str, ...] = ()


def case(case_id: str, line: str, code: int, *message: str, stdout: tuple[str, ...] = (),
         root: bool = False):  # fmt: skip
    """A table row: `line` is split on spaces, then each word is formatted with the files."""
    marks = [ROOT_ONLY] if root else []
    return pytest.param(Case(tuple(line.split()), code, message, stdout), id=case_id, marks=marks)


CASES = [
    # export
    case("export-empty-checkpoint", "export {empty_pt} -o {tmp}/o.onnx", 2,
         "cannot load", "empty.pt': the file is empty", "save or copy the file again"),
    case("export-truncated-checkpoint", "export {trunc_pt} -o {tmp}/o.onnx", 2,
         "cannot load", "trunc.pt': the file is truncated", "save or copy the file again"),
    case("export-weights-pickled-module",
         "export {linear_factory} --weights {whole_pt} --example-shape 1x5x6 -o {tmp}/o.onnx", 2,
         "whole.pt' needs full unpickling (it imports ", "test_bad_input.Packed)",
         "pass --trust-pickle only if you trust the file",
         "save the weights with torch.save(model.state_dict(), path)"),
    case("export-weights-onnx-file",
         "export {linear_factory} --weights {trunc_onnx} --example-shape 1x5x6 -o {tmp}/o.onnx", 2,
         "cannot load weights", "trunc.onnx': the file was not written by torch.save",
         "save the weights with torch.save(model.state_dict(), path)"),
    case("export-time-major-checkpoint", "export {ckpt} --time-major -o {tmp}/o.onnx", 2,
         "--time-major contradicts rnnedge checkpoint lstm.pt",
         "records the input layout (batch, time, features)", "drop --time-major"),
    case("export-both-layout-flags", "export {ckpt} --batch-first --time-major -o {tmp}/o.onnx", 2,
         "--batch-first and --time-major conflict", "pass only one of them"),
    case("export-zero-batch-example", "export {ckpt} --example-shape 0x10x6 -o {tmp}/o.onnx", 2,
         "'0x10x6' is invalid", "as positive integers"),
    case("export-negative-length-example",
         "export {ckpt} --example-shape 1x-5x6 -o {tmp}/o.onnx", 2,
         "'1x-5x6' is invalid", "as positive integers"),
    case("export-opset-too-low", "export {ckpt} --opset 3 -o {tmp}/o.onnx", 2,
         "opset 3 is outside", "pass --opset"),
    case("export-opset-below-model-minimum",
         "export {resampled_factory} --example-shape 1x10x6 --opset 14 -o {tmp}/o.onnx", 2,
         "opset 14 is below 16", "aten::grid_sampler", "pass --opset 16 or higher"),
    case("export-nan-tolerance", "export {ckpt} --atol nan -o {tmp}/o.onnx", 2,
         "error: --atol must be positive, got nan", "such as 1e-5 (the default)"),
    case("export-negative-tolerance", "export {ckpt} --atol -1 -o {tmp}/o.onnx", 2,
         "error: --atol must be positive, got -1.0"),
    case("export-weights-other-sizes",
         "export {gru_factory} --weights {gru8_weights} --example-shape 1x5x6 -o {tmp}/o.onnx", 2,
         "gru8.pt' do not match the model that factory", "factories.py:gru' builds: 4 tensors "
         "differ in shape, the first weight_ih_l0, which is [24, 6] in the file and [12, 6] in "
         "the model; make the factory build the model these weights were saved from"),
    case("export-weights-other-keys",
         "export {linear_factory} --weights {gru8_weights} --example-shape 1x5x6 -o {tmp}/o.onnx",
         2, "4 keys in the file but not in the model, the first weight_ih_l0; 2 keys of the "
         "model missing from the file, the first weight;"),
    case("export-output-is-folder", "export {ckpt} -o {tmp}", 2,
         "is a directory", "pass a file name"),
    case("export-streaming-gru-cell",
         "export {gru_cell_factory} --streaming --example-shape 1x5x6 -o {tmp}/o.onnx", 2,
         "cell is an nn.GRUCell, whose state lives in the model's forward loop",
         "--streaming carries the state of nn.LSTM and nn.GRU modules only"),
    case("export-streaming-non-recurrent",
         "export {linear_factory} --streaming --example-shape 1x5x6 -o {tmp}/o.onnx", 2,
         "--streaming needs an nn.LSTM or nn.GRU", "the model has none"),
    case("export-dict-output",
         "export {dict_factory} --example-shape 1x5x6 -o {tmp}/o.onnx", 5,
         "the model returns a dict", "tensors and nested tuples or lists of tensors"),
    case("export-read-only-folder", "export {ckpt} -o {ro}/o.onnx", 2,
         "is not writable", "choose another output path", root=True),
    # quantize
    case("quantize-empty-model", "quantize {empty_onnx} -o {tmp}/q.onnx", 2,
         "empty.onnx' is empty", "export the model again"),
    case("quantize-truncated-model", "quantize {trunc_onnx} -o {tmp}/q.onnx", 2,
         "trunc.onnx' is not a valid ONNX model", "export it with rnnedge export"),
    case("quantize-static-without-calibration",
         "quantize {m} -o {tmp}/q.onnx --mode static-int8", 2,
         "static-int8 needs calibration data", "pass --calibration"),
    case("quantize-nan-calibration",
         "quantize {m} -o {tmp}/q.onnx --mode static-int8 --calibration {nan}", 2,
         "--calibration contains 1 NaN or infinite values", "clean or impute them"),
    case("quantize-calibration-rank",
         "quantize {m} -o {tmp}/q.onnx --mode static-int8 --calibration {rank1}", 2,
         "--calibration has shape (6,)", "expects rank 3"),
    case("quantize-output-suffix", "quantize {m} -o {tmp}/q.txt", 2,
         "q.txt' does not end in .onnx; pass -o NAME.onnx"),
    case("quantize-unknown-target", "quantize {m} -o {tmp}/q.onnx --target pi9", 2,
         "unknown device 'pi9'", "known devices: "),
    case("quantize-read-only-folder", "quantize {m} -o {ro}/q.onnx", 2,
         "is not writable", "choose another output path", root=True),
    case("quantize-full-disk", "quantize {m} -o {full}/q.onnx", 2,
         "No space left on device", "free some space", root=True),
    # run
    case("run-empty-model", "run {empty_onnx} -i {x}", 2,
         "empty.onnx' is empty", "export the model again"),
    case("run-truncated-model", "run {trunc_onnx} -i {x}", 2,
         "trunc.onnx' is not a valid ONNX model", "export it with rnnedge export"),
    case("run-truncated-ort-model", "run {trunc_ort} -i {x}", 2,
         "trunc.ort' is a damaged or truncated .ort file",
         "convert the .onnx model again with rnnedge convert MODEL --ort"),
    case("run-empty-input", "run {m} -i {empty_npy}", 2,
         "cannot read", "empty.npy", "check that the file is complete"),
    case("run-truncated-input", "run {m} -i {trunc_npy}", 2,
         "cannot read", "trunc.npy", "check that the file is complete"),
    case("run-empty-csv", "run {m} -i {empty_csv}", 2,
         "empty.csv' contains no numbers", "one row per time step"),
    case("run-header-only-csv", "run {m} -i {header_csv}", 2,
         "header.csv' contains no numbers", "one row per time step"),
    case("run-rank-1", "run {m} -i {rank1}", 2, "has shape (6,)", "expects rank 3"),
    case("run-rank-4", "run {m} -i {rank4}", 2, "has shape (1, 2, 10, 6)", "expects rank 3"),
    case("run-nan", "run {m} -i {nan}", 2,
         "nan.npy contains 1 NaN or infinite values", "--nonfinite warn"),
    case("run-infinite", "run {m} -i {inf}", 2,
         "inf.npy contains 1 NaN or infinite values", "clean or impute them"),
    case("run-zero-length", "run {m} -i {len0}", 2,
         "has shape (2, 0, 6) with an empty axis 1", "at least one element"),
    case("run-zero-batch", "run {m} -i {batch0}", 2,
         "has shape (0, 10, 6) with an empty axis 0", "at least one element"),
    case("run-zero-sequence-lens", "run {packed} -i {lengths_zero}", 2,
         "[lengths] has lengths from 0 to 10", "drop empty sequences"),
    case("run-sequence-lens-past-end", "run {packed} -i {lengths_long}", 2,
         "[lengths] has lengths from 10 to 11", "from 1 to 10"),
    case("run-float-sequence-lens", "run {packed} -i {lengths_float}", 2,
         "has dtype float64", "astype('int64')"),
    case("run-sequence-lens-batch", "run {packed} -i {lengths_batch}", 2,
         "[lengths] has shape (3,)", "give one length per sequence"),
    case("run-stream-non-recurrent", "run {linear} -i {x} --stream", 2,
         "linear.onnx has no state inputs to carry between chunks, so it cannot stream",
         "run it without --stream"),
    case("run-stream-classifier", "run {m} -i {x} --stream", 2,
         "lstm.onnx has no state inputs to carry between chunks", "run it without --stream",
         "exported again with --streaming"),
    case("run-unexpected-array", "run {m} -i {extra_npz}", 2,
         "unexpected ['junk']", "remove 'junk' from the .npz file, or rename it to a model "
         "input name"),
    case("run-misnamed-array", "run {m} -i {misnamed_npz}", 2,
         "missing ['input'], unexpected ['feats']", "rename 'feats' to 'input' in the .npz file"),
    case("run-semicolon-csv-mixed-comma", "run {m} -i {decimal_comma_csv}", 2,
         "line 1 contains both ';' and ','", "decimal point (0.5, not 0,5)"),
    case("run-stream-zero-chunk", "run {m} -i {x} --stream --chunk 0", 2,
         "--chunk must be at least 1 time step, got 0"),
    case("run-chunk-without-stream", "run {m} -i {x} --chunk 3", 2,
         "--chunk applies to streaming only", "add --stream"),
    case("run-zero-threads", "run {m} -i {x} --threads 0", 2,
         "--threads must be a whole number of at least 1, got 0"),
    case("run-unnamed-state", "run {foreign_gru} -i {x} -o {tmp}/y.npz", 2,
         "input 'h_in' looks like a recurrent state (like output 'h_out')",
         "name the pair with --state h_in=h_out, or give a constant with --feed h_in=VALUE"),
    case("run-state-batch", "run {foreign_gru} -i {state_batch_npz} -o {tmp}/y.npz", 2,
         "state_batch.npz[h_in] has shape (1, 4, 16), a state for a batch of 4",
         "has a batch of 10 on axis 1 (time-major); give h_in the shape (1, 10, 16)"),
    case("run-feed-state-shape", "run {foreign_gru} -i {x} --feed h_in=1,2", 2,
         "--feed h_in=1,2: value float32[2] min=1 max=2 for input 'h_in' does not fit its "
         "shape [1, 'batch', 16]", "give one value, which fills it"),
    case("run-feed-integer-state", "run {foreign_gru} -i {x} --feed h_in={int_state}", 2,
         "--feed h_in=", "int_state.npy: value int64[1, 10, 16]",
         "convert it with array.astype('float32')"),
    case("run-feed-paired-state", "run {foreign_gru} -i {x} --state h_in=h_out --feed h_in=0",
         2, "--feed h_in=0: input 'h_in' is a state input, paired by --state h_in=h_out",
         "give array 'h_in' in an .npz input file",
         "or drop --state h_in=h_out to give it as a constant with --feed"),
    case("run-unknown-state", "run {m} -i {x} --state a=b", 2,
         "state input 'a' is not an input", "fix the name in --state"),
    case("run-unknown-nonfinite-policy", "run {m} -i {x} --nonfinite ignore", 2,
         "'ignore' is not one of", "rnnedge run --help"),
    case("run-output-suffix", "run {m} -i {x} -o {tmp}/y.txt", 2,
         "y.txt' must end in .npy or .npz"),
    case("run-output-is-input", "run {m} -i {x} -o {x}", 2,
         "x.npy' is the input file", "which the outputs would overwrite",
         "choose another output path"),
    case("run-output-is-input-other-path", "run {m} -i {x} -o {tmp}/nothing/../x.npy", 2,
         "nothing/../x.npy' is the input file", "choose another output path"),
    case("run-output-is-input-link", "run {m} -i {x} -o {tmp}/x_link.npy", 2,
         "x_link.npy' is the input file", "choose another output path"),
    case("run-state-output-twice", "run {m} -i {x} --state h0=hn --state c0=hn", 2,
         "--state h0=hn and --state c0=hn both name the output 'hn'",
         "pair each state input with its own output"),
    case("run-state-input-twice", "run {m} -i {x} --state h0=hn --state h0=cn", 2,
         "--state h0=hn and --state h0=cn both name the state input 'h0'",
         "name each state input in one pair only"),
    case("run-full-disk", "run {packed} -i {lengths_big} -o {full}/y.npy", 2,
         "No space left on device", "free some space", root=True),
    # profile
    case("profile-devices-dir-read-only", "profile {m} --runs 2 --devices-dir {ro}/devices", 2,
         "cannot create", "Read-only file system", "pass --devices-dir with a writable folder",
         root=True),
    case("profile-empty-model", "profile {empty_onnx} --no-store", 2,
         "empty.onnx' is empty", "export the model again"),
    case("profile-truncated-ort-model", "profile {trunc_ort} --no-store", 2,
         "trunc.ort' is a damaged or truncated .ort file",
         "convert the .onnx model again with rnnedge convert MODEL --ort"),
    case("profile-huge-sequence-length", "profile {m} --seq-len 1000000000000 --no-store", 2,
         "sequence length 1000000000000 at batch 1 needs about", "pass a sequence length of"),
    case("profile-huge-batch", "profile {m} --batch 1000000000000 --seq-len 100 --no-store", 2,
         "at batch 1000000000000 needs about", "pass a batch of at most"),
    case("profile-negative-batch", "profile {m} --batch -1 --no-store", 2,
         "--batch must be at least 1, got -1"),
    case("profile-zero-runs", "profile {m} --runs 0 --no-store", 2,
         "--runs must be at least 1, got 0"),
    case("profile-negative-warmup", "profile {m} --warmup -1 --no-store", 2,
         "--warmup must be 0 or more, got -1"),
    case("profile-unknown-provider", "profile {m} --provider tpu --no-store", 2,
         "unknown provider 'tpu'", "choose one of: auto, cpu"),
    case("profile-zero-budget", "profile {m} --budget-s 0 --no-store", 2,
         "--budget-s must be a positive number of seconds, got 0.0"),
    case("profile-sweep-zero-batch", "profile {m} --sweep batch=0,1 --no-store", 2,
         "--sweep 'batch=0,1': values must be at least 1, got 0"),
    case("profile-sweep-unknown-axis", "profile {m} --sweep depth=1 --no-store", 2,
         "invalid sweep 'depth=1'", "AXIS one of batch, seq-len"),
    case("profile-sweep-not-integers", "profile {m} --sweep seq-len=a,b --no-store", 2,
         "sweep 'seq-len=a,b'", "values must be integers"),
    case("profile-sweep-repeated-value", "profile {m} --sweep seq-len=1,1 --no-store", 2,
         "sweep 'seq-len=1,1' lists 1 more than once", "list each value once"),
    case("profile-sweep-and-seq-len", "profile {m} --sweep seq-len=10 --seq-len 100 --no-store",
         2, "--seq-len 100 conflicts with --sweep seq-len=10", "sets the sequence length",
         "drop --seq-len, or add 100 to the sweep"),
    case("profile-sweep-and-batch", "profile {m} --sweep batch=1,2 --batch 1 --no-store", 2,
         "--batch 1 conflicts with --sweep batch=1,2",
         "drop --batch, since the sweep already measures 1"),
    case("profile-remote-sweep-and-threads",
         "profile {m} --remote pi@board --sweep threads=1,2 --threads 4", 2,
         "--threads 4 conflicts with --sweep threads=1,2", "sets the thread count"),
    case("profile-sweep-missing-precision", "profile {m} --sweep precision=int8 --no-store", 2,
         "no model of precision 'int8'", "rnnedge quantize MODEL"),
    case("profile-corrupt-profile",
         f"profile {{m}} --device x86-64 --devices-dir {{corrupt_devices}} {QUICK}", 2,
         "x86-64.yaml: invalid YAML at line 2", "fix the file or delete it"),
    case("profile-check-without-baseline",
         f"profile {{m}} --check --device x86-64 --devices-dir {{tmp}}/none {QUICK}", 2,
         "no profile of x86-64 in ", "/none yet, so no baseline of lstm.onnx",
         "profile it without --check first"),
    case("profile-check-nan-tolerance",
         f"profile {{m}} --check --tolerance nan --device x86-64 --devices-dir {{baseline}} "
         f"--seq-len 5 {QUICK}", 2,
         "tolerance must be 0 or more, got nan"),
    case("profile-invalid-measurement",
         f"profile {{m}} --device x86-64 --devices-dir {{bad_measurements}} {QUICK}", 2,
         "bad-measurements/x86-64.yaml: measurements[0]: field 'latency_ms.p50_ms' must be a "
         "finite number of at least 0, got 'fast'", "fix the value or delete that measurement"),
    case("profile-check-invalid-measurement",
         f"profile {{m}} --check --device x86-64 --devices-dir {{bad_batch}} --seq-len 5 "
         f"{QUICK}", 2,
         "measurements[1]: field 'batch' must be an integer of at least 1, got -5"),
    # The sweep is checked before any SSH connection, so no board is contacted.
    case("profile-remote-bad-sweep", "profile {m} --remote pi@board --sweep depth=1,2", 2,
         "invalid sweep 'depth=1,2'", "AXIS one of batch, seq-len"),
    case("profile-read-only-devices",
         f"profile {{m}} --device x86-64 --devices-dir {{ro}} --seq-len 5 {QUICK}", 2,
         "Read-only file system", "make", root=True),
    # devices
    # An unreadable profile is only a warning for `devices list` (see tests/test_devices.py).
    case("devices-list-folder-is-file", "devices list --devices-dir {x}", 2,
         "'--devices-dir'", "x.npy' is a file"),
    case("devices-show-unknown", "devices show pi9", 2, "unknown device 'pi9'", "known devices"),
    case("devices-show-path-name", "devices show ../etc", 2,
         "invalid device name '../etc'", "starts with a lowercase letter or a digit"),
    case("devices-show-hidden-name", "devices show .hidden", 2,
         "invalid device name '.hidden': a device name starts with a lowercase letter or a "
         "digit, followed by at most 63 lowercase letters, digits, '.', '-' or '_'"),
    case("devices-show-unknown-field", "devices show x86-64 --devices-dir {extra_devices}", 2,
         "unknown field 'colour'", "allowed fields: schema_version"),
    case("devices-show-empty-profile", "devices show x86-64 --devices-dir {empty_devices}", 2,
         "x86-64.yaml: the device profile is empty", "delete the file to start a new profile"),
    case("devices-compare-unknown", "devices compare pi9 x86-64", 2, "unknown device 'pi9'"),
    case("devices-compare-invalid-measurement",
         "devices compare --devices-dir {bad_batch}", 2,
         "bad-batch/x86-64.yaml: measurements[1]: field 'batch' must be an integer of at "
         "least 1, got -5", "fix the value or delete that measurement"),
    case("devices-show-invalid-measurement",
         "devices show x86-64 --devices-dir {bad_measurements}", 2,
         "measurements[0]: field 'latency_ms.p50_ms'", "got 'fast'"),
    case("devices-plot-invalid-measurement",
         "devices plot --devices-dir {bad_measurements} -o {tmp}/p.png", 2,
         "measurements[0]: field 'latency_ms.p50_ms'", "got 'fast'"),
    case("devices-predict-invalid-measurement",
         "devices predict x86-64 --cell lstm --hidden-size 8 --features 6 "
         "--devices-dir {bad_batch}", 2,
         "measurements[1]: field 'batch' must be an integer of at least 1, got -5"),
    case("devices-plot-unknown", "devices plot pi9 -o {tmp}/p.png", 2, "unknown device 'pi9'"),
    case("devices-plot-not-png", "devices plot x86-64 -o {tmp}/p.svg", 2,
         "p.svg' must end in .png"),
    case("devices-plot-read-only",
         "devices plot x86-64 --devices-dir {baseline} -o {ro}/p.png", 2,
         "cannot write to", "choose a writable output directory", root=True),
    case("devices-predict-zero-hidden",
         "devices predict x86-64 --cell lstm --hidden-size 0 --features 6", 2,
         "--hidden-size must be at least 1, got 0"),
    case("devices-predict-zero-length",
         "devices predict x86-64 --cell gru --hidden-size 8 --features 6 --seq-len 0", 2,
         "error: --seq-len must be at least 1, got 0"),
    case("devices-predict-negative-batch",
         "devices predict x86-64 --cell gru --hidden-size 8 --features 6 --batch -1", 2,
         "error: --batch must be at least 1, got -1"),
    # doctor: findings go to stdout and an error finding exits 3; a missing model file or
    # an unknown device is a usage error
    case("doctor-empty-model", "doctor {empty_onnx}", 3, "doctor found 1 error",
         "empty.onnx' is empty", "fix: export the model again",
         stdout=("empty.onnx' is empty", "fix: export the model again")),
    case("doctor-truncated-model", "doctor {trunc_onnx}", 3, "doctor found 1 error",
         "trunc.onnx' is not a valid ONNX model",
         stdout=("trunc.onnx' is not a valid ONNX model",)),
    case("doctor-truncated-ort-model", "doctor {trunc_ort}", 3, "doctor found 1 error",
         "trunc.ort is a damaged or truncated .ort file",
         "fix: convert the .onnx model again with rnnedge convert MODEL --ort",
         stdout=("trunc.ort is a damaged or truncated .ort file",)),
    case("doctor-missing-model", "doctor {tmp}/absent.onnx", 2,
         "model file", "absent.onnx' not found", "pass the path to an .onnx file"),
    case("doctor-unknown-device", "doctor {m} --device pi9", 2,
         "unknown device 'pi9'", "omit --device to check against this host's own profile"),
    # convert
    case("convert-no-format", "convert {m}", 2, "no target format given", "pass --ort"),
    case("convert-truncated-model", "convert {trunc_onnx} --ort -o {tmp}/j.ort", 2,
         "not a valid ONNX model"),
    case("convert-wrong-suffix", "convert {m} --ort -o {tmp}/m.onnx", 2,
         "must end in .ort"),
    # report
    case("report-missing-folder", "report {tmp}/absent -o {tmp}/r.html", 2,
         "report folder", "absent' not found", "pass an existing folder"),
    case("report-nothing-to-report", "report {tmp}/nothing -o {tmp}/r.html", 2,
         "no device profiles", "run 'rnnedge profile MODEL'"),
    case("report-output-folder-missing", "report {baseline} -o {tmp}/absent/r.html", 2,
         "absent' does not exist", "create it or choose another output path"),
    case("report-output-not-html", "report {baseline} -o {tmp}/r.txt", 2,
         "report output", "r.txt' must end in .html or .htm"),
    case("report-devices-dir-missing",
         "report {baseline} --devices-dir {tmp}/absent -o {tmp}/r.html", 2,
         "--devices-dir", "absent' not found", "pass an existing folder"),
    case("report-read-only-folder", "report {baseline} -o {ro}/r.html", 2,
         "is not writable", root=True),
    case("report-full-disk", "report {baseline} -o {full}/r.html", 2,
         "No space left on device", "free some space", root=True),
    # demo: every one of these fails before any training
    case("demo-zero-epochs", "demo --epochs 0", 2, "error: --epochs must be at least 1, got 0"),
    case("demo-zero-runs", "demo --runs 0", 2, "error: --runs must be at least 1, got 0"),
    case("demo-output-is-file", "demo --output-dir {x}", 2, "x.npy' is a file", "pass a folder"),
    case("demo-read-only-folder", "demo --output-dir {ro}", 2,
         "is not writable", "pass a writable folder", root=True),
    case("demo-folder-on-read-only", "demo --output-dir {ro}/demo", 2,
         "cannot create the demo folder", "Read-only file system", root=True),
]  # fmt: skip


FACTORIES = """
import torch


class ReturnsDict(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(6, 4, batch_first=True)

    def forward(self, x):
        return {"output": self.rnn(x)[0]}


def returns_dict():
    return ReturnsDict()


def linear():
    return torch.nn.Linear(6, 3)


# A GRU whose outputs go through grid_sample, an operator that needs opset 16.
class Resampled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(6, 4, batch_first=True)

    def forward(self, x):
        y = self.rnn(x)[0].unsqueeze(1)
        grid = torch.zeros(y.size(0), 1, y.size(2), 2)
        return torch.nn.functional.grid_sample(y, grid, align_corners=False)


def resampled():
    return Resampled()


# A GRU cell stepped through time in forward, whose state --streaming cannot carry.
class CellLoop(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = torch.nn.GRUCell(6, 4)

    def forward(self, x):
        h = torch.zeros(x.size(0), 4)
        for step in range(x.size(1)):
            h = self.cell(x[:, step], h)
        return h


def gru_cell():
    return CellLoop()


def gru():
    return torch.nn.GRU(6, 4, batch_first=True)
"""


class Packed(nn.Module):
    """An LSTM over a padded batch with its lengths, as rnnedge export takes one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.LSTM(FEATURES, 8, batch_first=True)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]


def linear_model(path: Path) -> Path:
    """A model without a recurrent layer: one MatMul over the features of every step."""
    weights = numpy_helper.from_array(np.ones((FEATURES, 3), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "sequence", 6])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "sequence", 3])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, path)
    return path


@pytest.fixture(scope="module")
def models(exported, tmp_path_factory) -> dict[str, Path | str]:
    """Models shared by the cases: the packed LSTM, a linear model and its factory."""
    root = tmp_path_factory.mktemp("bad-input-models")
    report = export_model(Packed(), root / "packed.onnx", example_shape="2x10x6")
    assert [spec.name for spec in report.inputs] == ["input", "lengths"]
    onnx.checker.check_model(str(root / "packed.onnx"))
    factory = root / "factories.py"
    factory.write_text(FACTORIES)
    torch.save(Packed(), root / "whole.pt")
    torch.save(nn.GRU(FEATURES, 8, batch_first=True).state_dict(), root / "gru8.pt")
    export_foreign_gru(root / "foreign_gru.onnx")
    baseline = root / "baseline"
    assert main(["profile", str(exported["lstm"]), "--device", "x86-64", "--seq-len", "5",
                 "--devices-dir", str(baseline), *QUICK.split()]) == 0  # fmt: skip
    return {
        "m": exported["lstm"],
        "ckpt": exported["lstm.pt"],
        "packed": root / "packed.onnx",
        "linear": linear_model(root / "linear.onnx"),
        "linear_factory": f"{factory}:linear",
        "dict_factory": f"{factory}:returns_dict",
        "resampled_factory": f"{factory}:resampled",
        "gru_cell_factory": f"{factory}:gru_cell",
        "gru_factory": f"{factory}:gru",
        "gru8_weights": root / "gru8.pt",
        "foreign_gru": root / "foreign_gru.onnx",
        "ort": convert_to_ort(exported["lstm"], root / "lstm.ort").model,
        "whole_pt": root / "whole.pt",
        "baseline": baseline,
    }


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def mounts(tmp_path_factory):
    """A read-only tmpfs and a full one, for the cases marked root; empty without root."""
    if not CAN_MOUNT:
        yield {}
        return
    root = tmp_path_factory.mktemp("mounts")
    with tmpfs(root / "ro", "size=64k,ro") as read_only, tmpfs(root / "full", "size=16k") as full:
        with contextlib.suppress(OSError), open(full / "filler", "wb") as handle:
            while True:
                handle.write(b"\0" * 1024)
                handle.flush()
        yield {"ro": read_only, "full": full}


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _bad_measurements_dir(folder: Path, baseline: Path, *changes) -> Path:
    """A devices folder whose x86-64.yaml has one copy of the baseline's real measurement
    per change, each edited by `(field, key, value)` (`key` None for a top-level field)."""
    data = yaml.safe_load((baseline / "x86-64.yaml").read_text())
    measured = data["measurements"][0]
    data["measurements"] = []
    for field, key, value in changes:
        entry = yaml.safe_load(yaml.safe_dump(measured))
        if key is None:
            entry[field] = value
        else:
            entry[field][key] = value
        data["measurements"].append(entry)
    folder.mkdir()
    (folder / "x86-64.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def _profile_dir(folder: Path, text: str | None, **changes) -> Path:
    """A devices folder whose x86-64.yaml is `text`, or the catalog entry with `changes`."""
    folder.mkdir()
    if text is None:
        catalog = Path(__file__).parents[1] / "devices" / "x86-64.yaml"
        text = yaml.safe_dump({**yaml.safe_load(catalog.read_text()), **changes})
    (folder / "x86-64.yaml").write_text(text)
    return folder


@pytest.fixture
def places(models, mounts, exported, tmp_path, rng) -> dict[str, Path | str]:
    """Every placeholder of the table: the shared models and files made for this case."""
    x = rng.standard_normal((2, 10, FEATURES)).astype(np.float32)
    nan, inf = x.copy(), x.copy()
    nan[0, 3, 2] = np.nan
    inf[1, 4, 0] = np.inf
    model_bytes = exported["lstm"].read_bytes()
    checkpoint_bytes = exported["lstm.pt"].read_bytes()
    npy = _save(tmp_path / "x.npy", x)

    files = {
        "tmp": tmp_path,
        "x": npy,
        "empty_onnx": tmp_path / "empty.onnx",
        "trunc_onnx": tmp_path / "trunc.onnx",
        "trunc_ort": tmp_path / "trunc.ort",
        "empty_pt": tmp_path / "empty.pt",
        "trunc_pt": tmp_path / "trunc.pt",
        "empty_npy": tmp_path / "empty.npy",
        "trunc_npy": tmp_path / "trunc.npy",
        "empty_csv": tmp_path / "empty.csv",
        "header_csv": tmp_path / "header.csv",
        "rank1": _save(tmp_path / "rank1.npy", x[0, 0]),
        "rank4": _save(tmp_path / "rank4.npy", x[np.newaxis]),
        "nan": _save(tmp_path / "nan.npy", nan),
        "inf": _save(tmp_path / "inf.npy", inf),
        "len0": _save(tmp_path / "len0.npy", x[:, :0]),
        "batch0": _save(tmp_path / "batch0.npy", x[:0]),
        "corrupt_devices": _profile_dir(tmp_path / "corrupt", "name: [unclosed\n  - x: :\n"),
        "extra_devices": _profile_dir(tmp_path / "extra", None, colour="blue"),
        "empty_devices": _profile_dir(tmp_path / "empty", ""),
        # measurements[0] has a text p50 and measurements[1] a negative batch.
        "bad_measurements": _bad_measurements_dir(
            tmp_path / "bad-measurements", models["baseline"],
            ("latency_ms", "p50_ms", "fast"), ("batch", None, -5),
        ),
        # Only measurements[1] is invalid, so the first error is the batch.
        "bad_batch": _bad_measurements_dir(
            tmp_path / "bad-batch", models["baseline"],
            ("batch", None, 1), ("batch", None, -5),
        ),
    }  # fmt: skip

    files["empty_onnx"].write_bytes(b"")
    files["trunc_onnx"].write_bytes(model_bytes[: len(model_bytes) // 2])
    ort_bytes = Path(models["ort"]).read_bytes()
    files["trunc_ort"].write_bytes(ort_bytes[: len(ort_bytes) // 2])
    files["empty_pt"].write_bytes(b"")
    files["trunc_pt"].write_bytes(checkpoint_bytes[: len(checkpoint_bytes) // 2])
    files["empty_npy"].write_bytes(b"")
    files["trunc_npy"].write_bytes(npy.read_bytes()[:100])
    files["empty_csv"].write_text("")
    files["header_csv"].write_text("ax,ay,az,gx,gy,gz\n")

    for name, lengths, data in [
        ("lengths_zero", np.array([10, 0]), x),
        ("lengths_long", np.array([10, 11]), x),
        ("lengths_float", np.array([10.0, 4.5]), x),
        ("lengths_batch", np.array([10, 4, 3]), x),
        ("lengths_big", np.full(4, 1000), np.zeros((4, 1000, FEATURES), np.float32)),
    ]:
        files[name] = tmp_path / f"{name}.npz"
        np.savez(files[name], input=data, lengths=lengths)

    (tmp_path / "nothing").mkdir()
    files["extra_npz"] = tmp_path / "extra.npz"
    np.savez(files["extra_npz"], input=x, junk=x)
    # For the time-major foreign GRU, x is 2 steps of a batch of 10.
    files["state_batch_npz"] = tmp_path / "state_batch.npz"
    np.savez(files["state_batch_npz"], x=x, h_in=np.zeros((1, 4, FOREIGN_HIDDEN), np.float32))
    files["int_state"] = _save(tmp_path / "int_state.npy", np.zeros((1, 10, 16), np.int64))
    files["misnamed_npz"] = tmp_path / "misnamed.npz"
    np.savez(files["misnamed_npz"], feats=x)
    files["decimal_comma_csv"] = tmp_path / "decimal.csv"
    files["decimal_comma_csv"].write_text("0,5;1,5;2;3;4;5\n")
    (tmp_path / "x_link.npy").symlink_to(npy)
    return {**models, **mounts, **files}


def snapshot(folders: list[Path]) -> dict[str, tuple[int, str]]:
    """Every file under `folders` with its mode and content hash."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path)] = (stat.S_IMODE(path.stat().st_mode), digest)
    return found


@pytest.mark.parametrize("bad", CASES)
def test_bad_input(capsys, monkeypatch, places, bad):
    monkeypatch.chdir(places["tmp"])
    folders = [places["tmp"], places["baseline"]]
    folders += [places[key] for key in ("ro", "full") if key in places]
    before = snapshot(folders)
    argv = [word.format(**places) for word in bad.args]

    code = main(argv)
    out, err = capsys.readouterr()

    assert code == bad.code, err
    lines = [line for line in err.splitlines() if not line.startswith("WARNING: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in bad.message:
        assert fragment in lines[0]
    for prose in TORCH_PROSE:
        assert prose not in lines[0]
    assert "Traceback" not in err
    if bad.stdout:
        for fragment in bad.stdout:
            assert fragment in out
    else:
        assert out == ""
    assert snapshot(folders) == before


def _commands(cases) -> set[str]:
    names = set()
    for param in cases:
        args = param.values[0] if isinstance(param.values[0], list) else param.values[0].args
        words = [w for w in args if not w.startswith("{")]
        names.add(" ".join(words[:2]) if words[0] == "devices" else words[0])
        names.update(f"{words[0]} {w}" for w in words if w in ("--stream", "--sweep", "--check"))
    return names


def test_corpus_covers_every_command():
    commands = _commands(CASES) | _commands(CLI_BAD_INPUT)
    top_level = {name for name in cli.commands if name != "devices"}
    assert top_level <= commands, top_level - commands
    expected = {
        "export", "quantize", "run", "run --stream", "profile", "profile --sweep",
        "profile --check", "devices list", "devices show", "devices compare", "devices plot",
        "devices predict", "doctor", "report", "demo",
    }  # fmt: skip
    assert expected <= commands, expected - commands
    assert len(CASES) >= 30


def test_verbose_prints_traceback(capsys, places):
    code = main(["-v", "run", str(places["packed"]), "-i", str(places["lengths_zero"])])
    _, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_atomic_write_follows_umask(tmp_path, umask):
    from rnnedge._fileio import write_bytes_atomic

    previous = os.umask(umask)
    try:
        write_bytes_atomic(tmp_path / "out.bin", b"data")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o666 & ~umask


def test_atomic_write_keeps_existing_mode(tmp_path):
    from rnnedge._fileio import write_bytes_atomic

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_umask_fallback_without_proc(monkeypatch):
    """Where /proc/self/status is unreadable, the umask is read by setting and restoring it."""
    from rnnedge import _fileio

    read_text = Path.read_text

    def no_proc(self, *args, **kwargs):
        if str(self) == "/proc/self/status":
            raise OSError("no /proc here")
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_proc)
    previous = os.umask(0o027)
    try:
        assert _fileio._umask() == 0o027
        assert os.umask(0o027) == 0o027  # the fallback restored the umask
    finally:
        os.umask(previous)
