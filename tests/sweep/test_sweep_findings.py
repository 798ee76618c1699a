"""A sweep's "findings" are those `segcost verify` reports for the same model and size (its default graph)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segcost.sweep import expand, parse_spec, run_point
from segcost.sweep.run import PointResult

pytestmark = pytest.mark.torch
REPO = Path(__file__).resolve().parents[2]
FACTORY = "tests.sweep.test_sweep_findings:size_resize_net"


def size_resize_net(num_classes: int = 4):
    """Conv 3×3/2, then a bilinear resize to the input's size read from x.shape (as torchvision's LRASPP does):
    the raw export computes the size with Shape nodes, which fold to constants at a static input size."""
    from torch import nn

    class SizeResizeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, num_classes, 3, 2, 1)

        def forward(self, x):
            return nn.functional.interpolate(self.conv(x), size=x.shape[-2:], mode="bilinear", align_corners=False)

    return SizeResizeNet().eval()


def _verify_count(run_cli, *options: str) -> int:
    code, out, err = run_cli("verify", FACTORY, "--trust-model-code", "--input-shape", "1x3x32x48",
                             "--format", "json", *options)
    assert code in (0, 1), err
    return json.loads(out[out.index("{"):])["count"]


def test_sweep_findings_match_segcost_verify(run_cli):
    pytest.importorskip("torch")
    spec = parse_spec({"measures": ["findings"],
                       "axes": {"models": [FACTORY], "input_sizes": ["48x32"], "num_classes": [4]}})
    (point,) = expand(spec, "test-fingerprint", search_path=str(REPO)).points
    result = PointResult.from_dict(run_point(point))
    assert result.status == "ok", result.error
    assert _verify_count(run_cli, "--no-fuse") > 0   # the raw export has findings (Shape) that folding removes
    assert result.findings == _verify_count(run_cli) == 0
    assert result.finding_rules == ""
