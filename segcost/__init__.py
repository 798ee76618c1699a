"""segcost: exact per-layer cost of segmentation networks for embedded accelerators."""

__version__ = "0.1.0"
