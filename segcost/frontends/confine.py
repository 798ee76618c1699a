"""External data, confined to the model's folder, for every tensor of a model.

ONNX lets any TensorProto keep its bytes in another file (``data_location = EXTERNAL``,
``location`` relative to the model). onnx and onnxruntime resolve such a path against the
directory they are given — for a model handed over in memory, the process's working
directory — and follow symlinks anywhere. segcost therefore never lets a library see an
external reference:

* graph initializers become lazy regions of a file segcost holds open (ir.datafile);
* every other tensor — a Constant's ``value``, any TENSOR/TENSORS/SPARSE_TENSOR attribute,
  If/Loop/Scan subgraph initializers and nodes, model-local functions, training graphs —
  is read here and put inline (``raw_data``), up to MAX_INLINE_BYTES in total;
* anything that cannot be read inside the model's folder is refused with one line naming
  the tensor.

Confinement: the model's folder — the folder of the path as given, where onnx.load and
onnxruntime look (a model file that is a symlink reads its data beside the link, not beside
its target) — is opened once as a directory descriptor, and a ``location`` is walked one component at a
time relative to it (``openat`` with ``O_NOFOLLOW``). A symlink met on the way is read and
followed by the same walk, so links that stay inside the folder work and a link, or a
``..``, that leaves it is refused; the final file must be a regular file. Each data file
is opened once and every later read goes through that descriptor. Python's pathlib cannot
do this (``resolve`` then ``open`` reopens by name), hence the hand-written walk; Linux's
``openat2(RESOLVE_BENEATH)`` would, but is not exposed by the os module.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections import deque
from collections.abc import Iterator
from math import prod
from pathlib import Path

import onnx

from segcost.errors import InputError
from segcost.fileio.numbers import parse_count
from segcost.ir import tensor_nbytes
from segcost.ir.datafile import HeldFile

MAX_INLINE_BYTES = 512 * 2**20  # external data of non-initializer tensors read into memory, in total
MAX_SYMLINKS = 40  # as the Linux kernel's own limit on symlinks followed in one lookup
# O_PATH (Linux): a directory is walked through, not read, so it needs no read permission.
_DIR_FLAGS = (getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
              | getattr(os, "O_CLOEXEC", 0))
# O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked right after.
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
TENSOR_ATTRIBUTES = frozenset({onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS,
                                onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS,
                                onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS})


def open_regular(path: Path, what: str = "") -> HeldFile:
    """Open `path` for reading once; InputError unless it is a regular file (a FIFO never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    held = HeldFile(fd, str(path))
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a directory, expected {what or 'a file'}")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file (a device, FIFO or socket), expected {what or 'a file'}")
    return held


class ExternalData:
    """Resolves external-data references of one model against its folder; holds the files it opened.

    Calling it with an initializer's TensorProto returns (HeldFile, offset, length) of the
    checked region (the IR's lazy loader reads it later through the held descriptor).
    """

    def __init__(self, model_path: Path, model_file: HeldFile | None = None):
        self.model_path = model_path
        # onnx.load and onnxruntime resolve `location` against os.path.dirname(path as given)
        self.base = Path(os.path.realpath(os.path.dirname(os.path.abspath(model_path))))
        try:
            self.base_fd = os.open(self.base, _DIR_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))
        except OSError as error:
            raise InputError(f"{model_path}: cannot open the model's folder ({error.strerror or error})") from None
        if model_file is not None:  # the folder opened is the one the model file was opened in
            try:
                same = os.stat(Path(model_path).name, dir_fd=self.base_fd)   # through a symlink, to its target
            except OSError:
                same = None
            held = os.fstat(model_file.fd)
            if same is None or (same.st_dev, same.st_ino) != (held.st_dev, held.st_ino):
                raise InputError(f"{model_path}: the file was replaced while being read")
        self._by_location: dict[str, HeldFile] = {}
        self._by_inode: dict[tuple[int, int], HeldFile] = {}
        self.inlined_bytes = 0
        self.inlined_tensors = 0   # tensors whose reference `inline` replaced by their bytes, ever

    def __del__(self) -> None:
        if getattr(self, "base_fd", -1) >= 0:
            os.close(self.base_fd)
            self.base_fd = -1

    def __call__(self, tensor: onnx.TensorProto) -> tuple[HeldFile, int, int]:
        return self.region(tensor, f"initializer {tensor.name!r}")

    def region(self, tensor: onnx.TensorProto, what: str) -> tuple[HeldFile, int, int]:
        """(open file, offset, length) of `tensor`'s external bytes, checked; InputError naming `what`."""
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        where = f"{self.model_path}: {what} external data {location!r}"
        if not location:
            raise InputError(f"{where}: no location given")
        if os.path.isabs(location) or Path(location).drive or location.startswith("\\"):
            raise InputError(f"{where}: absolute paths are refused; data must lie beside the model")
        normalized = posixpath.normpath(location)
        if normalized == ".." or normalized.startswith("../"):  # said before looking at the disk
            raise InputError(f"{where}: path escapes the model's directory {self.base}")
        held = self._open(location, where)
        expected = tensor_nbytes(tensor.data_type, prod(tensor.dims))   # sub-byte types packed
        # ASCII digits only, as onnxruntime reads them (Python's int() also takes "4_0", " 4", "٤")
        offset = parse_count(entries["offset"], f"{where}: offset") if "offset" in entries else 0
        length = parse_count(entries["length"], f"{where}: length") if "length" in entries else expected
        if offset < 0 or length < 0 or offset + length > held.size:
            raise InputError(f"{where}: region {offset}+{length} lies outside the {held.size}-byte file")
        if expected and length < expected:
            raise InputError(f"{where}: {length} bytes stored, {expected} needed for shape {list(tensor.dims)}")
        return held, offset, length

    def inline(self, tensor: onnx.TensorProto, what: str) -> None:
        """Replace `tensor`'s external reference by its bytes (raw_data), read through the checked file."""
        held, offset, length = self.region(tensor, what)
        self.inlined_bytes += length
        self.inlined_tensors += 1
        if self.inlined_bytes > MAX_INLINE_BYTES:
            raise InputError(f"{self.model_path}: {what}: external data of constants and subgraphs exceeds "
                             f"{MAX_INLINE_BYTES >> 20} MiB in total")
        tensor.raw_data = held.read(offset, length)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT

    def _open(self, location: str, where: str) -> HeldFile:
        held = self._by_location.get(location)
        if held is None:
            fd = self._open_beneath(location, where)
            info = os.fstat(fd)
            held = self._by_inode.get((info.st_dev, info.st_ino))
            if held is None:
                held = self._by_inode[info.st_dev, info.st_ino] = HeldFile(fd, str(self.base / location))
            else:
                os.close(fd)
            self._by_location[location] = held
        return held

    def _open_beneath(self, location: str, where: str) -> int:
        """A descriptor of `location` opened relative to the model's folder without ever leaving it."""
        parts = deque(location.split("/"))
        stack = [self.base_fd]  # directories walked into; stack[0] is the folder itself
        links = 0
        try:
            while parts:
                name = parts.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(stack) == 1:
                        raise InputError(f"{where}: path escapes the model's directory {self.base}")
                    os.close(stack.pop())
                    continue
                info = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise InputError(f"{where}: more than {MAX_SYMLINKS} symlinks")
                    target = os.readlink(name, dir_fd=stack[-1])
                    if os.path.isabs(target):  # allowed when it names a place inside the folder
                        prefix = str(self.base).rstrip("/") + "/"
                        if not target.startswith(prefix):
                            raise InputError(f"{where}: path escapes the model's directory {self.base} "
                                             f"(symlink to {target})")
                        for fd in stack[1:]:
                            os.close(fd)
                        del stack[1:]
                        target = target[len(prefix):]  # walked from the folder: '..' is still checked
                    parts.extendleft(reversed(target.split("/")))
                    continue
                if parts:
                    stack.append(os.open(name, _DIR_FLAGS, dir_fd=stack[-1]))
                    continue
                fd = os.open(name, _FILE_FLAGS, dir_fd=stack[-1])
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
                    raise InputError(f"{where}: not a regular file")
                return fd
            raise InputError(f"{where}: not a file")
        except (FileNotFoundError, NotADirectoryError):
            raise InputError(f"{where}: file not found") from None
        except (OSError, ValueError) as error:
            raise InputError(f"{where}: cannot open ({getattr(error, 'strerror', None) or error}; "
                             "changed while being checked?)") from None
        finally:
            for fd in stack[1:]:
                os.close(fd)


class ModelSource:
    """The model file as parsed by segcost, kept with the IR so the file can be read again as a whole.

    `whole_model()` parses every byte of the held file, as onnxruntime would (repeated
    fields merged by protobuf itself, not by segcost's scanner), with all external data put
    inline through the checked descriptors: what optimize's numeric check compares against.
    """

    def __init__(self, model_file: HeldFile, external: ExternalData):
        self.model_file = model_file
        self.external = external

    def whole_model(self) -> onnx.ModelProto:
        model = onnx.ModelProto()
        model.ParseFromString(self.model_file.read(0, self.model_file.size))
        for tensor in model.graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                held, offset, length = self.external(tensor)
                tensor.raw_data = held.read(offset, length)
                del tensor.external_data[:]
                tensor.data_location = onnx.TensorProto.DEFAULT
        attributes = [(node.name or index, node.op_type, attribute) for index, node in enumerate(model.graph.node)
                      for attribute in node.attribute if attribute.type in TENSOR_ATTRIBUTES]
        inlined, self.external.inlined_bytes = self.external.inlined_bytes, 0  # the same bound applies again
        try:
            confine_external_tensors(model, attributes, self.external)
        finally:
            self.external.inlined_bytes = inlined
        return model


def confine_external_tensors(model: onnx.ModelProto, top_level_attributes, external: ExternalData | None) -> None:
    """Inline (through `external`) or refuse every external tensor that is not a main-graph initializer.

    `top_level_attributes` are (node label, op type, AttributeProto) of the main graph that
    can hold tensors or graphs (collected by the loader's one walk over the nodes); the main
    graph's initializers are left to the IR's lazy loader.
    """
    found: list[tuple[onnx.TensorProto, str]] = []
    for node_label, op_type, attribute in top_level_attributes:
        found.extend(_attribute_tensors(attribute, f"node {node_label!r} ({op_type}) attribute {attribute.name!r}"))
    for index, tensor in enumerate(model.graph.sparse_initializer):
        found.extend(_sparse_tensors(tensor, f"sparse initializer #{index}"))
    for function in model.functions:
        found.extend(_nodes_tensors(function.node, f"function {function.name!r} "))
    for index, training in enumerate(model.training_info):
        for field in ("initialization", "algorithm"):
            if training.HasField(field):
                found.extend(_graph_tensors(getattr(training, field), f"training_info #{index} {field} "))
    for tensor, what in found:
        if external is None:
            raise InputError(f"{what}: external data needs the model's file (loaded from memory, refused)")
        external.inline(tensor, what)


def _graph_tensors(graph: onnx.GraphProto, prefix: str) -> Iterator[tuple[onnx.TensorProto, str]]:
    """External tensors of a (sub)graph: initializers, sparse initializers and node attributes."""
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor, f"{prefix}initializer {tensor.name!r}"
    for tensor in graph.sparse_initializer:
        yield from _sparse_tensors(tensor, f"{prefix}sparse initializer")
    yield from _nodes_tensors(graph.node, prefix)


def _nodes_tensors(nodes, prefix: str) -> Iterator[tuple[onnx.TensorProto, str]]:
    for index, node in enumerate(nodes):
        for attribute in node.attribute:
            if attribute.type in TENSOR_ATTRIBUTES:
                label = f"{prefix}node {node.name or index!r} ({node.op_type}) attribute {attribute.name!r}"
                yield from _attribute_tensors(attribute, label)


def _attribute_tensors(attribute: onnx.AttributeProto, what: str) -> Iterator[tuple[onnx.TensorProto, str]]:
    kind = attribute.type
    if kind == onnx.AttributeProto.TENSOR and attribute.t.data_location == onnx.TensorProto.EXTERNAL:
        yield attribute.t, what
    elif kind == onnx.AttributeProto.TENSORS:
        for index, tensor in enumerate(attribute.tensors):
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                yield tensor, f"{what} #{index}"
    elif kind == onnx.AttributeProto.SPARSE_TENSOR:
        yield from _sparse_tensors(attribute.sparse_tensor, what)
    elif kind == onnx.AttributeProto.SPARSE_TENSORS:
        for index, sparse in enumerate(attribute.sparse_tensors):
            yield from _sparse_tensors(sparse, f"{what} #{index}")
    elif kind == onnx.AttributeProto.GRAPH:
        yield from _graph_tensors(attribute.g, f"{what}: ")
    elif kind == onnx.AttributeProto.GRAPHS:
        for index, graph in enumerate(attribute.graphs):
            yield from _graph_tensors(graph, f"{what} #{index}: ")


def _sparse_tensors(sparse: onnx.SparseTensorProto, what: str) -> Iterator[tuple[onnx.TensorProto, str]]:
    for field in ("values", "indices"):
        tensor = getattr(sparse, field)
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor, f"{what} {field}"
