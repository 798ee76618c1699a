"""Every ONNX element type's size in bits, and sub-byte weights (int4/uint4/int2/uint2/float4, packed 2 or 4 per
byte) read, checked and counted as ONNX stores them: ceil(elements·bits/8) bytes (segcost.ir.tensor_nbytes)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load
from segcost.ir import dtype_bits, tensor_nbytes

_TYPES = [dtype for dtype in helper.get_all_tensor_dtypes() if dtype not in (TensorProto.UNDEFINED, TensorProto.STRING)]
_SUB_BYTE = [dtype for dtype in (TensorProto.INT4, TensorProto.UINT4, TensorProto.INT2, TensorProto.UINT2,
                                 TensorProto.FLOAT4E2M1) if dtype in _TYPES]


@pytest.mark.parametrize("dtype", _TYPES, ids=helper.tensor_dtype_to_string)
@pytest.mark.parametrize("elements", [1, 7, 512])
def test_packed_size_is_what_onnx_stores(dtype, elements):
    stored = numpy_helper.from_array(np.zeros(elements, helper.tensor_dtype_to_np_dtype(dtype)))
    assert stored.data_type == dtype and len(stored.raw_data) == tensor_nbytes(dtype, elements)
    assert dtype_bits(dtype) > 0


def _weight_model(dtype: int, path=None) -> tuple[onnx.ModelProto, np.ndarray]:
    """x [1,64,256] @ DequantizeLinear(W [256,512] of `dtype`, scale) → [1,64,512] (opset 21)."""
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    values = np.arange(256 * 512).reshape(256, 512) % 3
    weight = numpy_helper.from_array(values.astype(np_dtype), "W")
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "s")
    nodes = [helper.make_node("DequantizeLinear", ["W", "s"], ["wf"]), helper.make_node("MatMul", ["x", "wf"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model, values.astype(np_dtype)


@pytest.mark.parametrize("external", [False, True], ids=["raw_data", "external_data"])
@pytest.mark.parametrize("dtype", _SUB_BYTE, ids=helper.tensor_dtype_to_string)
def test_sub_byte_weights_load_count_packed_and_read_back(dtype, external, tmp_path):
    model, values = _weight_model(dtype)
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=external, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    graph = load(path)
    packed = (256 * 512 * dtype_bits(dtype)) // 8
    assert analyze(graph).totals.weight_bytes == packed   # W packed (a quantization scale is no weight)
    assert graph.initializers["W"].nbytes == packed
    np.testing.assert_array_equal(graph.initializers["W"].array.astype(np.float32), values.astype(np.float32))
