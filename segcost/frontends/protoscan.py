"""Read an ONNX file's structure without reading its weights.

Why hand-written: `onnx.load` (protobuf) must copy every weight byte into the message —
for a 130 MB model that is most of the analysis time, and a file over 2 GB cannot be
parsed at all. Analysis needs the graph and each initializer's dims and dtype, not its
data. This module walks the protobuf wire format of ModelProto → GraphProto →
TensorProto through a small read window, copies everything *except* the bulk payload of large
initializers (``raw_data``, packed ``float_data``/``double_data``) into a small buffer,
and lets protobuf parse that. The skipped payloads are recorded as (offset, length) in
the file, so an initializer's data is read lazily with the same code path as ONNX
external data. Every length is bounds-checked: a truncated or hostile file raises
InputError.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from segcost.errors import InputError
from segcost.ir.datafile import HeldFile

# Field numbers from onnx.proto
MODEL_GRAPH = 7
GRAPH_NODE = 1
GRAPH_INITIALIZER = 5
TENSOR_NAME = 8
TENSOR_FLOAT_DATA = 4
TENSOR_RAW_DATA = 9
TENSOR_DOUBLE_DATA = 10
# Payloads of these fields are little-endian arrays, readable with np.fromfile as they lie.
SKIPPABLE_PAYLOADS = (TENSOR_RAW_DATA, TENSOR_FLOAT_DATA, TENSOR_DOUBLE_DATA)
# Smaller payloads stay in the message: shape inference reads small constants (Reshape
# targets, Resize scales), which are tens of bytes; conv weights of even tiny layers are
# larger, and leaving them in the file keeps a 100k-node graph's memory in bounds.
MIN_SKIPPED_BYTES = 1024

WIRE_VARINT, WIRE_FIXED64, WIRE_LENGTH, WIRE_FIXED32 = 0, 1, 2, 5
_INITIALIZER_KEY = bytes((GRAPH_INITIALIZER << 3 | WIRE_LENGTH,))   # a graph's initializer field key
_INITIALIZER_KEY_VALUE = _INITIALIZER_KEY[0]
_NODE_KEY_VALUE = GRAPH_NODE << 3 | WIRE_LENGTH   # a graph's node field key (one byte)


class _Reader:
    def __init__(self, buffer: _FileWindow, where: str):
        self.buffer = buffer
        self.where = where

    def fail(self, what: str) -> InputError:
        return InputError(f"{self.where}: not a valid ONNX model ({what}; truncated or corrupt?)")

    def fields(self, start: int, end: int):
        """Yield (field_number, wire_type, field_start, payload_start, field_end) over a message."""
        window = self.buffer
        data, base = window.covering(start, min(start + 20, end))
        limit = min(end - base, len(data))  # the window's bytes inside the message, relative to base
        position = start
        while position < end:
            # A field's key and length prefix are two varints of at most 10 bytes each; both are
            # decoded from the window's bytes, never read past the message's end.
            offset = position - base
            if offset < 0 or offset > len(data) - 20:
                data, base = window.covering(position, min(position + 20, end))
                limit = min(end - base, len(data))
                offset = position - base
            if offset >= limit:
                raise self.fail("the file ends inside a field")
            key = data[offset]
            if key < 0x80:
                offset += 1
            else:
                key, offset = _varint(data, offset, limit, self)
            number, wire_type = key >> 3, key & 7
            if number == 0:
                raise self.fail("field number 0")
            if wire_type == WIRE_LENGTH:
                length = data[offset] if offset < limit else 0x80   # one-byte lengths inline
                if length < 0x80:
                    offset += 1
                else:
                    length, offset = _varint(data, offset, limit, self)
                payload = base + offset
                field_end = payload + length
            elif wire_type == WIRE_VARINT:
                payload = base + offset
                field_end = base + (offset + 1 if offset < limit and data[offset] < 0x80
                                    else _varint(data, offset, limit, self)[1])
            elif wire_type == WIRE_FIXED64:
                payload = base + offset
                field_end = payload + 8
            elif wire_type == WIRE_FIXED32:
                payload = base + offset
                field_end = payload + 4
            else:
                raise self.fail(f"unsupported wire type {wire_type}")
            if field_end > end:
                raise self.fail("field runs past the end of its message")
            yield number, wire_type, position, payload, field_end
            position = field_end


def _varint(data: bytes, offset: int, limit: int, reader: _Reader) -> tuple[int, int]:
    """(value, offset after it) of the varint at data[offset:limit].

    Why hand-written: protobuf's Python API has no public varint decoder, and this runs
    twice per field of the file (a million times for a 100k-node graph).
    """
    if offset + 1 < limit:
        byte = data[offset]
        if byte < 0x80:  # one-byte varints (field keys, short lengths) are the common case
            return byte, offset + 1
        second = data[offset + 1]
        if second < 0x80:  # two bytes: the lengths of weight payloads and initializers up to 16 KiB
            return (byte & 0x7F) | second << 7, offset + 2
    value = shift = 0
    for position in range(offset, min(offset + 10, limit)):
        byte = data[position]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position + 1
        shift += 7
    raise reader.fail("bad varint")


def _encode_varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _FileWindow:
    """Byte access to a file through one cached window (``pread``), never the whole file.

    mmap would be simpler, but the kernel maps whole page-cache folios around each touched
    header, so skipping 130 MB of weights still added ~55 MB to the process's RSS.
    """

    WINDOW = 1024 * 1024

    def __init__(self, descriptor: int, size: int):
        self.descriptor = descriptor
        self.size = size
        self.start = 0
        self.data = b""

    def __len__(self) -> int:
        return self.size

    def covering(self, start: int, stop: int) -> tuple[bytes, int]:
        """(window bytes, their file offset), the window holding start..stop (stop - start <= WINDOW)."""
        if not (self.start <= start and stop <= self.start + len(self.data)):
            self.start = start
            self.data = os.pread(self.descriptor, self.WINDOW, start)
        return self.data, self.start

    def __getitem__(self, item: slice) -> bytes:
        start, stop = item.start, min(item.stop, self.size)
        if self.start <= start and stop <= self.start + len(self.data):
            return self.data[start - self.start:stop - self.start]
        return os.pread(self.descriptor, stop - start, start)


class ScannedModel(NamedTuple):
    """What `scan` read: the bytes to parse, where the skipped payloads lie, and the graph's nodes as bytes."""

    data: bytearray   # the model without large initializer payloads (protobuf parses it without another copy)
    regions: dict[int, tuple[int, int]]   # {initializer index: (offset, length) of its payload in the file}
    nodes: bytes   # the main graph's `node` fields (key, length, NodeProto) as they lie in the file, in order


def scan(source: HeldFile | str | os.PathLike) -> ScannedModel:
    """Return (model bytes without large initializer payloads, {initializer index: (offset, length)}, node fields).

    `source` is the model file, already open (the payloads are read later through the same
    descriptor), or a path. Raises InputError for a truncated or corrupt file, and for a ``graph``
    field that occurs twice: protobuf (and so onnxruntime) merges repeated singular
    message fields, concatenating the initializer lists, and payload numbers per
    occurrence would then attach one tensor's bytes to another.

    The node fields are the serialized `graph.node` list of the parsed model (protobuf reads a
    repeated field's occurrences in order): shape inference's weightless copy of the model is
    assembled from them (shapes.infer) instead of copying 100k parsed NodeProtos.
    """
    if not isinstance(source, HeldFile):  # a path: opened here (the loader passes the file it checked)
        source = HeldFile(os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)), str(source))
    window = _FileWindow(source.fd, source.size)
    reader = _Reader(window, source.label)
    out = bytearray()
    skipped: dict[int, tuple[int, int]] = {}
    node_runs: list[tuple[int, int]] = []
    graphs = 0
    for number, wire_type, field_start, payload, field_end in reader.fields(0, len(window)):
        if number == MODEL_GRAPH:
            graphs += 1
            if graphs > 1:
                raise InputError(f"{source.label}: not a valid ONNX model (the graph field occurs more than "
                                 "once; protobuf would merge the copies)")
        if number == MODEL_GRAPH and wire_type == WIRE_LENGTH:
            graph = _graph_without_payloads(reader, payload, field_end, skipped, node_runs)
            out += _encode_varint(MODEL_GRAPH << 3 | WIRE_LENGTH) + _encode_varint(len(graph)) + graph
        else:
            out += window[field_start:field_end]
    return ScannedModel(out, skipped, b"".join(window[start:end] for start, end in node_runs))


def _graph_without_payloads(reader: _Reader, start: int, end: int, skipped: dict[int, tuple[int, int]],
                            node_runs: list[tuple[int, int]]) -> bytes:
    """The GraphProto at start..end with its large initializer payloads left out (recorded in `skipped`).

    The file ranges (start, end) of its `node` fields are appended to `node_runs`, adjacent
    fields as one range (the nodes of a file usually lie in one run).

    The walk is `_Reader.fields` unrolled into one loop over the read window: a 100k-node
    graph has ~370k fields here (nodes, initializers and their dims/name/data), and a
    generator frame plus a tuple per field was most of the scan's time. The checks and
    their messages are the same as in `fields`.
    """
    out = bytearray()
    index = 0
    kept_from = start  # fields other than initializers are copied in runs, not one by one
    run_start = run_end = -1   # the run of node fields being read
    window = reader.buffer
    position = start
    while position < end:
        data, base = window.covering(position, min(position + 20, end))
        offset = position - base
        limit = min(end - base, len(data))  # the window's bytes inside the graph, relative to base
        if offset >= limit:
            raise reader.fail("the file ends inside a field")
        # A key and a length (two varints, at most 20 bytes) starting at or before `last` lie
        # inside the window; past it the window moves on. A window that reaches the graph's end
        # (or a file cut short) is walked to its end, every read bounded by `limit`.
        last = limit - 1 if base + len(data) >= end or offset > len(data) - 20 else len(data) - 20
        message_end = end - base
        while offset <= last:
            key_at = offset
            key = data[offset]
            if key < 0x80:
                offset += 1
            else:
                key, offset = _varint(data, offset, limit, reader)
            wire_type = key & 7
            if key < 8:
                raise reader.fail("field number 0")
            if wire_type == WIRE_LENGTH:
                length = data[offset] if offset < limit else 0x80
                if length < 0x80:
                    offset += 1
                else:
                    length, offset = _varint(data, offset, limit, reader)
                field_end = offset + length
            elif wire_type == WIRE_VARINT:
                field_end = offset + 1 if offset < limit and data[offset] < 0x80 else \
                    _varint(data, offset, limit, reader)[1]
            elif wire_type == WIRE_FIXED64:
                field_end = offset + 8
            elif wire_type == WIRE_FIXED32:
                field_end = offset + 4
            else:
                raise reader.fail(f"unsupported wire type {wire_type}")
            if field_end > message_end:
                raise reader.fail("field runs past the end of its message")
            if key == _INITIALIZER_KEY_VALUE:
                field_start = base + key_at
                out += window[kept_from:field_start] if kept_from < field_start else b""
                if field_end <= len(data):   # the whole tensor is in the window: walked here
                    tensor, region = _tensor_in_window(data, offset, field_end, base, reader)
                else:
                    tensor, region = _tensor_without_payload(reader, base + offset, base + field_end)
                if region is not None:
                    skipped[index] = region
                out += _INITIALIZER_KEY + _encode_varint(len(tensor)) + tensor
                index += 1
                kept_from = base + field_end
            elif key == _NODE_KEY_VALUE:   # a node: its range joins the run (a few steps per node, ~5 ms at 100k)
                if base + key_at != run_end:
                    if run_end >= 0:
                        node_runs.append((run_start, run_end))
                    run_start = base + key_at
                run_end = base + field_end
            offset = field_end
        position = base + offset
    if run_end >= 0:
        node_runs.append((run_start, run_end))
    out += window[kept_from:end]
    return bytes(out)


# TensorProto fields 1 (dims) and 2 (data_type), varints of at most 10 bytes, then the key of 8 (name) and a
# one-byte length; raw_data's key (field 9, length-delimited).
_WEIGHT_HEADER = re.compile(rb"(?:[\x08\x10][\x80-\xff]{0,9}[\x00-\x7f])*\x42[\x00-\x7f]")
_RAW_DATA_KEY = TENSOR_RAW_DATA << 3 | WIRE_LENGTH


def _tensor_in_window(data: bytes, start: int, end: int, base: int,
                      reader: _Reader) -> tuple[bytes, tuple[int, int] | None]:
    """_tensor_without_payload for a TensorProto lying whole in `data` (at start..end; `base` its file offset)."""
    # The layout protobuf writes for a weight: dims and data_type (one-byte keys, varints), the
    # name (a one-byte length), then raw_data to the tensor's end. Recognized by one regular
    # expression and a length check; anything else is walked field by field below.
    match = _WEIGHT_HEADER.match(data, start, end)
    if match is not None:
        key_at = match.end() + data[match.end() - 1]   # after the name
        if key_at + 2 < end and data[key_at] == _RAW_DATA_KEY and data[key_at + 2] < 0x80 <= data[key_at + 1]:
            # a two-byte length: payloads of 128 B to 16 KiB (larger ones are walked below)
            length = data[key_at + 1] & 0x7F | data[key_at + 2] << 7
            if key_at + 3 + length == end and length >= MIN_SKIPPED_BYTES:
                return data[start:key_at], (base + key_at + 3, length)
    payload = None   # (field start, payload start, field end) of the one skippable payload
    payloads = 0
    offset = start
    while offset < end:
        key_at = offset
        key = data[offset]
        if key < 0x80:
            offset += 1
        else:
            key, offset = _varint(data, offset, end, reader)
        wire_type = key & 7
        if key < 8:
            raise reader.fail("field number 0")
        if wire_type == WIRE_LENGTH:
            length = data[offset] if offset < end else 0x80
            if length < 0x80:
                offset += 1
            else:
                length, offset = _varint(data, offset, end, reader)
            field_end = offset + length
            if (key >> 3) in SKIPPABLE_PAYLOADS:
                payloads += 1
                payload = (key_at, offset, field_end)
        elif wire_type == WIRE_VARINT:
            field_end = offset + 1 if offset < end and data[offset] < 0x80 else _varint(data, offset, end, reader)[1]
        elif wire_type == WIRE_FIXED64:
            field_end = offset + 8
        elif wire_type == WIRE_FIXED32:
            field_end = offset + 4
        else:
            raise reader.fail(f"unsupported wire type {wire_type}")
        if field_end > end:
            raise reader.fail("field runs past the end of its message")
        offset = field_end
    if payloads != 1 or payload is None or payload[2] - payload[1] < MIN_SKIPPED_BYTES:
        return data[start:end], None
    field_start, payload_start, field_end = payload
    return data[start:field_start] + data[field_end:end], (base + payload_start, field_end - payload_start)


def _tensor_without_payload(reader: _Reader, start: int, end: int) -> tuple[bytes, tuple[int, int] | None]:
    payloads = [field for field in reader.fields(start, end)
                if field[0] in SKIPPABLE_PAYLOADS and field[1] == WIRE_LENGTH]
    # Only a single contiguous payload can be read back as one array; anything else stays inline.
    if len(payloads) != 1 or payloads[0][4] - payloads[0][3] < MIN_SKIPPED_BYTES:
        return bytes(reader.buffer[start:end]), None
    _, _, field_start, payload, field_end = payloads[0]
    # the fields before and after the skipped one, in their order
    return reader.buffer[start:field_start] + reader.buffer[field_end:end], (payload, field_end - payload)
