"""The graph IR (networkx.DiGraph + tensor tables) and its ONNX round trip."""

from segcost.ir.graph import (
    Dim,
    Graph,
    Initializer,
    ModelInfo,
    Node,
    Shape,
    TensorInfo,
    dtype_bits,
    is_static_shape,
    tensor_nbytes,
)
from segcost.ir.verify import verify_graph

__all__ = ["Dim", "Graph", "Initializer", "ModelInfo", "Node", "Shape", "TensorInfo", "dtype_bits", "is_static_shape",
           "tensor_nbytes", "verify_graph"]
