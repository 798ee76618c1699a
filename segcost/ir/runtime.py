"""The one way segcost opens an onnxruntime session: CPU, and silent.

onnxruntime logs a failing kernel itself, as a coloured `[E:onnxruntime:...]` line on stderr,
before raising the same failure as an exception; segcost turns that exception into its one
`segcost: error:` line, so the log line is a duplicate the user cannot act on. Severity 3
(ERROR) still lets it through: sessions here log FATAL only (4). Sessions opened by
third-party code segcost drives (onnxruntime.quantization's calibrators) use onnxruntime's
default logger, raised to the same level on the first session opened here.
(tests/test_runtime_sessions.py checks that no other module opens a session.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

QUIET_SEVERITY = 4   # onnxruntime's FATAL; 0 verbose .. 3 error

__all__ = ["QUIET_SEVERITY", "open_session", "session_options"]


def session_options(**settings: Any):
    """A new onnxruntime.SessionOptions with `settings` set as attributes and logging at QUIET_SEVERITY."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    for name, value in settings.items():
        setattr(options, name, value)
    options.log_severity_level = QUIET_SEVERITY
    return options


def open_session(model: onnx.ModelProto | bytes | str | Path, options=None):
    """An onnxruntime CPU InferenceSession of `model` (a ModelProto, its bytes, or a file path).

    `options` (an onnxruntime.SessionOptions, default: new ones) get log_severity_level set to
    QUIET_SEVERITY. Raises what onnxruntime raises for a model it cannot load.
    """
    import onnxruntime as ort

    ort.set_default_logger_severity(QUIET_SEVERITY)
    options = options if options is not None else ort.SessionOptions()
    options.log_severity_level = QUIET_SEVERITY
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
