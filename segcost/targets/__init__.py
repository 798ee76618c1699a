"""Accelerator facts as data files: support rules (`tidl-rules.toml`) and, later, cost profiles."""
