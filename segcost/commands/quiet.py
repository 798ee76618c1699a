"""Third-party chatter filtered out of segcost's output (CLI and API).

Libraries segcost drives print advice that is not about the user's model or cannot be acted
on: onnxruntime.quantization logs "Please consider to run pre-processing before
quantization" on the root logger (segcost's quantizer already prepares the graph), and
torch.onnx / onnxscript / torchvision emit deprecation and tracer warnings during export.
segcost's own messages go through click (CLI) or exceptions (API), never through these
channels, so nothing of segcost's is lost.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

THIRD_PARTY = r"(torch|torchvision|onnxscript|onnxruntime|onnx|timm|transformers|segmentation_models_pytorch)(\.|$)"


class _ThirdPartyRootRecords(logging.Filter):
    """Drops records logged on the root logger by code outside segcost (onnxruntime's quantizer does that)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.pathname.replace("\\", "/").find("/segcost/") >= 0


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Within the block: third-party warnings and records third-party code logs on the root logger are dropped."""
    root_filter = _ThirdPartyRootRecords()
    root = logging.getLogger()   # a logger's filters see the records logged on it, whatever handlers come later
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=THIRD_PARTY)
        # torch.jit's TracerWarning is attributed to the traced model's own line (a zoo model's
        # int(x.shape[-1])), so it is matched by its text: the export fixes the shape, as intended.
        warnings.filterwarnings("ignore",
                                message=r".*(trace might not generalize|might cause the trace to be incorrect)")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        root.addFilter(root_filter)
        try:
            yield
        finally:
            root.removeFilter(root_filter)
