"""The shipped device profiles against TI's published device times (benchmarks/device_reference.py's check)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

pytestmark = [pytest.mark.torch, pytest.mark.slow]   # exports 8 networks once (~30 s), then ~5 s

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "device_reference.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("device_reference", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("soc", ["tda4vm", "am62a"])
def test_leave_one_out_meets_the_goal_and_beats_macs_only(soc):
    from segcost.targets.device_fit import leave_one_out, macs_only_leave_one_out, median_abs_log, spearman
    from segcost.targets.profile_toml import load_profile

    bench = _benchmark()
    base_path, csv_path = bench.SOCS[soc]
    base = load_profile(str(base_path))
    samples = bench.samples_for(csv_path, base.rules)
    measured = [sample.measured_ms for sample in samples]
    loo = [leave_one_out(samples, base)[sample.name] for sample in samples]
    macs = [macs_only_leave_one_out(samples)[sample.name] for sample in samples]
    assert median_abs_log(loo, measured) <= 0.25 and spearman(loo, measured) >= 0.9
    assert median_abs_log(loo, measured) < median_abs_log(macs, measured)
    assert spearman(loo, measured) > spearman(macs, measured)
