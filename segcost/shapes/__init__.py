"""Shape resolution: every tensor's static shape, computed from the graph inputs.

The layer between the IR and everything that reads shapes (frontends load through it,
passes re-run it after rewriting). It imports only `segcost.ir` and `segcost.errors`.

Three steps, the later ones only when the earlier leave a consumed tensor open:

1. `onnx.shape_inference` (strict, with data propagation) on a weightless copy of the graph;
   when that leaves tensors open behind onnxruntime's com.microsoft ops (FusedConv, QLinearAdd,
   ... in ORT-optimized and QOperator models), it runs again with each replaced by its
   standard-ONNX shape twin (`contrib.py`);
2. `evaluate.resolve_value_chains`: the small integer tensors that exporters compute at run
   time from shapes (Shape → Gather/Slice → Cast → Concat → Reshape/Expand/Pad/Range chains of
   legacy torch exports and paddle2onnx) are evaluated (`values.py`: numpy where it gives
   onnxruntime's values bit for bit, else onnxruntime) and fed back as constants, and
   inference runs again on the part of the model still open (`open_part.py`) — only when
   every graph input is static;
3. shapes the file declares (`value_info`, graph outputs) fill what computation cannot derive
   (after a custom op). They never override a computed shape: a disagreement is recorded as a
   `ShapeConflict` (`graph.info.shape_conflicts`) that reports name with both shapes.

Then ops whose output shape constants fix (Reshape targets, Expand shapes, Split sizes,
SpaceToDepth blocks) must fit their input, or a ShapeError names them (`fit.py`). A shape error
after `--input-shape` moved away from the file's sizes says both sizes, and names a size fixed at
export only when one is found upstream (`export_size.py`).
"""

from segcost.shapes.declared import ShapeConflict
from segcost.shapes.infer import (
    InputShapes,
    apply_input_shapes,
    infer_shapes,
    symbolic_inputs,
)

__all__ = ["InputShapes", "ShapeConflict", "apply_input_shapes", "infer_shapes", "symbolic_inputs"]
