"""The graph IR (networkx.DiGraph + tensor tables) and its ONNX round trip."""

from segcost.ir.graph import (
    Dim,
    Graph,
    Initializer,
    ModelInfo,
    Node,
    Shape,
    TensorInfo,
    dtype_size,
    is_static_shape,
)
from segcost.ir.verify import verify_graph

__all__ = ["Dim", "Graph", "Initializer", "ModelInfo", "Node", "Shape", "TensorInfo", "dtype_size", "is_static_shape",
           "verify_graph"]
