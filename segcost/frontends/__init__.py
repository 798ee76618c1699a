"""Frontends: `onnx` (safe loader, always available) and `torch` (optional extra)."""
