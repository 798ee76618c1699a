"""Every zoo model through the whole pipeline: export with BatchNorm kept, optimize, compare.

Issue 5's acceptance on the zoo: after optimization no BatchNormalization remains, the node
count drops, MACs are unchanged and onnxruntime outputs agree (max abs diff ≤ 1e-4 on a
seeded random input; see segcost.pipeline for the tolerance). Inputs are small (the
pipeline's correctness does not depend on resolution) to keep CI fast.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from segcost.frontends import onnx as onnx_frontend  # noqa: E402
from segcost.frontends.torch import export  # noqa: E402
from segcost.ir.onnx_io import to_model  # noqa: E402
from segcost.pipeline import compare_outputs, optimize  # noqa: E402
from segcost.zoo.registry import all_models  # noqa: E402

pytestmark = pytest.mark.torch

MODELS = sorted(all_models())
# Smallest input every zoo architecture accepts (stride-32 encoders, ASPP dilations).
SMALL_INPUT = (1, 3, 128, 128)


@pytest.mark.parametrize("name", MODELS)
def test_optimize_removes_batchnorm_and_keeps_outputs(name, tmp_path):
    zoo_model = all_models()[name]
    module = zoo_model.build(zoo_model.num_classes)
    path = export(module, SMALL_INPUT, tmp_path / "model.onnx", keep_batchnorm=True)
    graph = onnx_frontend.load(path)
    original = to_model(graph)
    before_ops = [graph.node(key).op_type for key in graph.dag]
    result = optimize(graph)
    after_ops = [result.graph.node(key).op_type for key in result.graph.dag]
    if "BatchNormalization" in before_ops:
        # Every BN that follows a convolution is folded; the rest (ERFNet's BN after a Concat,
        # SwiftNet's pre-activation BN → ReLU → Conv) have no convolution to fold into.
        for key in result.graph.dag:
            node = result.graph.node(key)
            if node.op_type == "BatchNormalization":
                producer = result.graph.producer(node.inputs[0])
                assert producer is None or result.graph.node(producer).op_type not in ("Conv", "ConvTranspose")
        assert len(after_ops) < len(before_ops)
    assert result.after.totals.macs == result.before.totals.macs > 0
    max_diff = compare_outputs(original, to_model(result.graph), result.graph)
    assert max_diff <= 1e-4
    assert not optimize(result.graph).records[0].modified  # idempotent


@pytest.mark.parametrize("name", MODELS)
def test_dynamo_export_counts_like_hooks(name, tmp_path):
    """The torch.export-based exporter (external .onnx.data) gives the analyzer the same MACs as hooks."""
    from segcost.analyzer import analyze
    from segcost.zoo.hook_count import hook_macs

    zoo_model = all_models()[name]
    module = zoo_model.build(zoo_model.num_classes)
    shape = (1, 3, 64, 64)
    path = export(module, shape, tmp_path / "model.onnx", exporter="dynamo")
    assert analyze(onnx_frontend.load(path)).totals.macs == hook_macs(module, shape)
