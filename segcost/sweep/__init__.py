"""Design-space sweeps: many (model, size, width, classes, target, precision) points, exported and analyzed.

`load_spec` reads a TOML spec (spec.py), `expand` turns it into points with content hashes
(points.py), `run_sweep` runs the points the cache does not hold on a local process pool
or a Ray cluster and streams the table (driver.py), `pareto_fronts` finds the cost/mIoU
front (pareto.py). Importing this package does not import torch or ray.
"""

from segcost.sweep.driver import SweepInterrupted, SweepOptions, SweepSummary, run_sweep
from segcost.sweep.pareto import ParetoFront, pareto_fronts
from segcost.sweep.points import Point, expand
from segcost.sweep.run import PointResult, run_group, run_point
from segcost.sweep.spec import SweepSpec, load_spec, parse_spec
from segcost.sweep.store import NONDETERMINISTIC_COLUMNS, SweepRow, read_table

__all__ = [
    "NONDETERMINISTIC_COLUMNS", "ParetoFront", "Point", "PointResult", "SweepInterrupted", "SweepOptions", "SweepRow",
    "SweepSpec", "SweepSummary", "expand", "load_spec", "pareto_fronts", "parse_spec", "read_table", "run_group",
    "run_point", "run_sweep",
]
