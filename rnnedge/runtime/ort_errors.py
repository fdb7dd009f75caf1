"""Short, readable forms of ONNX Runtime's errors, and the ones that mean bad inputs."""

from __future__ import annotations

import re

from rnnedge.errors import InputError

ORT_ERROR_CHARS = 300
# "[ONNXRuntimeError] : 1 : FAIL : " and "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : ".
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_ORT_NODE = re.compile(r"running (?P<op>\w+) node\. Name:'(?P<name>[^']*)'")
# Texts of the shape checks on inputs and inside kernels, as onnxruntime 1.32 words them.
_SHAPE_REJECTION = re.compile(
    r"INVALID_ARGUMENT|must have shape|invalid dimensions|Invalid rank|cannot be reshaped"
)


def summarize_ort_error(exc: BaseException, limit: int = ORT_ERROR_CHARS) -> str:
    """Return the informative part of an ONNX Runtime error, at most `limit` characters.

    ONNX Runtime 1.x reports a failed node as "[ONNXRuntimeError] : 1 : FAIL : Non-zero
    status code returned while running Reshape node. Name:'node_Reshape_64' Status Message:
    /path/reshape_helper.h:84 onnxruntime::ReshapeHelper::ReshapeHelper(...) size != 0 was
    false. The input tensor cannot be reshaped ...". This keeps the last line, with the
    node's type and name and the sentences after the failed source check, such as "Reshape
    node 'node_Reshape_64': The input tensor cannot be reshaped ...". A longer text is cut
    at a word boundary and ends in "...".
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = _ORT_PREFIX.sub("", lines[-1])
    head, marker, status = text.partition("Status Message:")
    if marker:
        status = status.strip()
        # The source location and the check that failed, up to "was false.", are for
        # ONNX Runtime's developers; the sentences after them describe the problem.
        _, check, explanation = status.partition(" was false.")
        status = explanation.strip() if check and explanation.strip() else status
        node = _ORT_NODE.search(head)
        prefix = f"{node['op']} node '{node['name']}'" if node else head.strip().rstrip(".")
        text = f"{prefix}: {status}"
    return shorten(text, limit)


def shorten(text: str, limit: int) -> str:
    """Return `text` cut to at most `limit` characters at a word boundary, ending in "..."."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 3].rsplit(" ", 1)[0].rstrip(" ,;:")
    return f"{cut}..."


def input_rejection(exc: BaseException, model: str) -> InputError | None:
    """Return an InputError for an ONNX Runtime run error caused by input shapes, else None.

    A model from elsewhere can declare too little for rnnedge to check every shape before
    the run, such as a state whose batch axis has no name in common with the data's. ONNX
    Runtime then rejects the inputs inside a kernel.
    """
    if not _SHAPE_REJECTION.search(str(exc)):
        return None
    return InputError(
        f"ONNX Runtime rejected the inputs of {model}: {summarize_ort_error(exc)}; check each "
        "input's shape against the model's, and for a model without rnnedge metadata the "
        "layout (--layout batch-major or time-major)"
    )
