"""Just enough of the ONNX protobuf format to list a model's operators and external data.

The board runs without the onnx package, and onnxruntime exposes no graph API, so this
module decodes the protobuf wire format directly. It reads only these fields of onnx.proto
(field numbers from onnx/onnx.proto, stable since IR version 3):

    ModelProto:   ir_version 1, producer_name 2, producer_version 3, graph 7,
                  opset_import 8, metadata_props 14, training_info 20, functions 25
    GraphProto:   node 1, initializer 5, input 11, output 12, sparse_initializer 15
    NodeProto:    input 1, name 3, op_type 4, attribute 5, domain 7
    ValueInfoProto: name 1
    AttributeProto: name 1, i 3, s 4, t 5, g 6, tensors 10, graphs 11 (the bodies of
                  If, Loop and Scan), sparse_tensor 22, sparse_tensors 23
    TensorProto:  name 8, external_data 13, data_location 14
    SparseTensorProto: values 1, indices 2
    TrainingInfoProto: initialization 1, algorithm 2
    FunctionProto: name 1, node 7, domain 10, attribute_proto 11
    OperatorSetIdProto: domain 1, version 2
    StringStringEntryProto: key 1, value 2

Everything else, tensor contents included, is skipped without being decoded.
`external_tensors` lists every tensor whose data lives in another file; `identity_model`
writes the smallest valid model, used to test whether an execution provider loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from rnnedge.errors import InputError

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class NodeInfo:
    """One node of the graph or of a subgraph, with the path of its enclosing nodes."""

    name: str
    op_type: str
    domain: str  # "" is the default ai.onnx domain
    subgraph_of: str | None = None
    # The `hidden_size` and `direction` attributes of LSTM, GRU and RNN nodes.
    hidden_size: int | None = None
    directions: int = 1
    direction: str = "forward"
    inputs: tuple[str, ...] = ()


@dataclass
class ModelInfo:
    """The parts of a model that decide whether a runtime can load it."""

    ir_version: int = 0
    producer: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    nodes: list[NodeInfo] = field(default_factory=list)
    functions: set[tuple[str, str]] = field(default_factory=set)
    metadata: dict[str, str] = field(default_factory=dict)
    # The names of the main graph's outputs.
    outputs: list[str] = field(default_factory=list)

    def reads(self, name: str) -> bool:
        """Return whether a node (in any subgraph too) or a graph output reads `name`."""
        return name in self.outputs or any(name in node.inputs for node in self.nodes)


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """Yield (field number, value) of one message: ints for scalars, views for bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == _LENGTH:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError(f"field {number} runs past the end of the message")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire == _FIXED64:
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire} in field {number}")
        if pos > len(buf):
            raise ValueError("message truncated")


def _text(value: int | memoryview) -> str:
    if isinstance(value, int):
        raise ValueError("expected a string field, got a number")
    return bytes(value).decode("utf-8", errors="replace")


def _graph_nodes(buf: memoryview, parent: str | None, out: list[NodeInfo]) -> None:
    for number, value in _fields(buf):
        if number == 1 and not isinstance(value, int):
            _node(value, parent, out)


def _graph_outputs(buf: memoryview) -> list[str]:
    names = []
    for number, value in _fields(buf):
        if number == 12 and not isinstance(value, int):
            names += [_text(item) for sub, item in _fields(value) if sub == 1]
    return names


def _node(buf: memoryview, parent: str | None, out: list[NodeInfo]) -> None:
    name = op_type = domain = ""
    attributes = []
    inputs = []
    for number, value in _fields(buf):
        if number == 1:
            inputs.append(_text(value))
        elif number == 3:
            name = _text(value)
        elif number == 4:
            op_type = _text(value)
        elif number == 7:
            domain = _text(value)
        elif number == 5 and not isinstance(value, int):
            attributes.append(value)
    domain = "" if domain == "ai.onnx" else domain
    hidden_size, direction = _recurrent_attributes(attributes)
    directions = 2 if direction == "bidirectional" else 1
    out.append(
        NodeInfo(name, op_type, domain, parent, hidden_size, directions, direction, tuple(inputs))
    )
    label = name or op_type
    inner = f"{parent}/{label}" if parent else label
    for attribute in attributes:
        for number, value in _fields(attribute):
            if number in (6, 11) and not isinstance(value, int):
                _graph_nodes(value, inner, out)


def _recurrent_attributes(attributes: list[memoryview]) -> tuple[int | None, str]:
    hidden_size, direction = None, "forward"
    for attribute in attributes:
        fields = list(_fields(attribute))
        names = [_text(value) for number, value in fields if number == 1]
        if names == ["hidden_size"]:
            hidden_size = next((v for n, v in fields if n == 3 and isinstance(v, int)), None)
        elif names == ["direction"]:
            direction = next((_text(v) for n, v in fields if n == 4), "") or "forward"
    return hidden_size, direction


def parse_model(data: bytes) -> ModelInfo:
    """Read opsets, operators (subgraphs included), local functions and metadata.

    Raises:
        InputError: the bytes are not an ONNX model.
    """
    info = ModelInfo()
    buf = memoryview(data)
    producer_name = producer_version = ""
    try:
        graph_seen = False
        for number, value in _fields(buf):
            if number == 1 and isinstance(value, int):
                info.ir_version = value
            elif number == 2:
                producer_name = _text(value)
            elif number == 3:
                producer_version = _text(value)
            elif number == 7 and not isinstance(value, int):
                graph_seen = True
                _graph_nodes(value, None, info.nodes)
                info.outputs = _graph_outputs(value)
            elif number == 8 and not isinstance(value, int):
                domain, version = "", 0
                for sub, item in _fields(value):
                    if sub == 1:
                        domain = _text(item)
                    elif sub == 2 and isinstance(item, int):
                        version = item
                info.opsets["" if domain == "ai.onnx" else domain] = version
            elif number == 14 and not isinstance(value, int):
                entry = {sub: _text(item) for sub, item in _fields(value) if sub in (1, 2)}
                info.metadata[entry.get(1, "")] = entry.get(2, "")
            elif number == 25 and not isinstance(value, int):
                _function(value, info)
    except (ValueError, UnicodeError) as exc:
        raise InputError(f"not an ONNX model: the protobuf data is invalid ({exc})") from exc
    info.producer = f"{producer_name} {producer_version}".strip()
    if not graph_seen or info.ir_version == 0:
        raise InputError("not an ONNX model: no graph or no IR version in the file")
    return info


def _function(buf: memoryview, info: ModelInfo) -> None:
    name = domain = ""
    nodes: list[NodeInfo] = []
    for number, value in _fields(buf):
        if number == 1:
            name = _text(value)
        elif number == 10:
            domain = _text(value)
        elif number == 7 and not isinstance(value, int):
            _node(value, None, nodes)
    info.functions.add((domain, name))
    info.nodes.extend(NodeInfo(n.name, n.op_type, n.domain, f"function {name}") for n in nodes)


# --- tensors whose data lives outside the model file ------------------------------------

# TensorProto.DataLocation.EXTERNAL; DEFAULT (0) keeps the data inside the tensor.
_EXTERNAL = 1
# Subgraphs nest through node attributes; protobuf's own parsers stop at 100 levels.
_MAX_DEPTH = 100


@dataclass(frozen=True)
class ExternalTensor:
    """One tensor that records external data: its `external_data` entries in file order.

    `external` is True when `data_location` is EXTERNAL. A tensor is listed when either
    that flag or any `external_data` entry is present, so that a reader that looks at only
    one of the two cannot be sent outside the model's folder.
    """

    name: str
    where: str
    external: bool
    entries: tuple[tuple[str, str], ...]

    def values(self, key: str) -> list[str]:
        """Return every value stored under `key`, in file order (a key may repeat)."""
        return [value for entry_key, value in self.entries if entry_key == key]


def external_tensors(data: bytes | memoryview) -> list[ExternalTensor]:
    """List the tensors of a model that keep their data in another file.

    Looks at initializers, sparse initializers, tensor attributes of nodes, the graphs
    nested in If, Loop and Scan nodes, local functions and training graphs.

    Raises:
        ValueError: the bytes are not a valid protobuf message.
    """
    found: list[ExternalTensor] = []
    for number, value in _fields(memoryview(data)):
        if isinstance(value, int):
            continue
        if number == 7:
            _graph_tensors(value, "graph", found, 0)
        elif number == 20:
            for sub, graph in _fields(value):
                if sub in (1, 2) and not isinstance(graph, int):
                    _graph_tensors(graph, "training graph", found, 0)
        elif number == 25:
            _function_tensors(value, found)
    return found


def _graph_tensors(buf: memoryview, where: str, out: list[ExternalTensor], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"subgraphs nested deeper than {_MAX_DEPTH} levels")
    for number, value in _fields(buf):
        if isinstance(value, int):
            continue
        if number == 5:
            _tensor(value, f"initializer of {where}", out)
        elif number == 15:
            _sparse_tensor(value, f"sparse initializer of {where}", out)
        elif number == 1:
            _node_tensors(value, where, out, depth)


def _node_tensors(buf: memoryview, where: str, out: list[ExternalTensor], depth: int) -> None:
    name = op_type = ""
    attributes = []
    for number, value in _fields(buf):
        if number == 3:
            name = _text(value)
        elif number == 4:
            op_type = _text(value)
        elif number == 5 and not isinstance(value, int):
            attributes.append(value)
    inner = f"node {name or op_type or '?'} in {where}"
    for attribute in attributes:
        _attribute_tensors(attribute, inner, out, depth)


def _attribute_tensors(buf: memoryview, where: str, out: list[ExternalTensor], depth: int) -> None:
    for number, value in _fields(buf):
        if isinstance(value, int):
            continue
        if number in (5, 10):
            _tensor(value, f"attribute of {where}", out)
        elif number in (22, 23):
            _sparse_tensor(value, f"attribute of {where}", out)
        elif number in (6, 11):
            _graph_tensors(value, f"subgraph of {where}", out, depth + 1)


def _function_tensors(buf: memoryview, out: list[ExternalTensor]) -> None:
    name = ""
    for number, value in _fields(buf):
        if number == 1:
            name = _text(value)
    where = f"function {name or '?'}"
    for number, value in _fields(buf):
        if isinstance(value, int):
            continue
        if number == 7:
            _node_tensors(value, where, out, 0)
        elif number == 11:
            _attribute_tensors(value, where, out, 0)


def _sparse_tensor(buf: memoryview, where: str, out: list[ExternalTensor]) -> None:
    for number, value in _fields(buf):
        if number in (1, 2) and not isinstance(value, int):
            _tensor(value, where, out)


def _tensor(buf: memoryview, where: str, out: list[ExternalTensor]) -> None:
    name = ""
    external = False
    entries: list[tuple[str, str]] = []
    for number, value in _fields(buf):
        if number == 8:
            name = _text(value)
        elif number == 14 and isinstance(value, int):
            external = external or value == _EXTERNAL
        elif number == 13 and not isinstance(value, int):
            entry = {sub: _text(item) for sub, item in _fields(value) if sub in (1, 2)}
            entries.append((entry.get(1, ""), entry.get(2, "")))
    if external or entries:
        out.append(ExternalTensor(name, where, external, tuple(entries)))


# --- writing: only what the identity model needs -------------------------------------


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LENGTH) + _encode_varint(len(payload)) + payload


def _field_int(number: int, value: int) -> bytes:
    return _encode_varint(number << 3 | _VARINT) + _encode_varint(value)


def _float_vector_info(name: str) -> bytes:
    # ValueInfoProto{name, type: TypeProto{tensor_type{elem_type FLOAT, shape [1]}}}
    shape = _field_bytes(1, _field_int(1, 1))
    tensor = _field_int(1, 1) + _field_bytes(2, shape)
    return _field_bytes(1, name.encode()) + _field_bytes(2, _field_bytes(1, tensor))


def identity_model(opset: int = 13, ir_version: int = 7) -> bytes:
    """Serialize a one-node model, y = Identity(x) on a float vector of length 1."""
    node = _field_bytes(1, b"x") + _field_bytes(2, b"y") + _field_bytes(4, b"Identity")
    graph = (
        _field_bytes(1, node)
        + _field_bytes(2, b"probe")
        + _field_bytes(11, _float_vector_info("x"))
        + _field_bytes(12, _float_vector_info("y"))
    )
    opset_id = _field_bytes(1, b"") + _field_int(2, opset)
    return _field_int(1, ir_version) + _field_bytes(7, graph) + _field_bytes(8, opset_id)
