"""`segcost verify` and `segcost cost` read one rule table: on every zoo model, every target finding is a
fallback layer in the cost report and every fallback layer is a target finding."""

from __future__ import annotations

import pytest

from segcost.frontends import onnx as onnx_frontend
from segcost.frontends.torch import export
from segcost.passes import VerifyGroupedConvPass
from segcost.passes.verify_conv import PLACEMENT_RULES
from segcost.pipeline import build_pipeline
from segcost.targets.cost_model import ACCELERATOR, estimate, load_profile
from segcost.zoo.registry import all_models

# none of the modules above imports torch; the exports below need it
torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.torch, pytest.mark.slow]   # ~100 s: exports every zoo architecture

# One name per distinct build function (two seed rows can share an architecture).
ARCHITECTURES = sorted({model.build: name for name, model in reversed(all_models().items())}.values())
SMALL_INPUT = (1, 3, 64, 64)   # every architecture's stride fits; placement does not depend on the size


@pytest.fixture(scope="module")
def fused_graphs(tmp_path_factory):
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            model = all_models()[name]
            path = export(model.build(model.num_classes), SMALL_INPUT, tmp_path_factory.mktemp("zoo") / "m.onnx")
            cache[name] = build_pipeline()(onnx_frontend.load(path)).graph
        return cache[name]

    return get


@pytest.mark.parametrize("rules", ["current", "legacy"])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_verify_findings_are_exactly_the_cost_fallbacks(name, rules, fused_graphs):
    graph = fused_graphs(name)
    profile = load_profile("tda4vm").with_values(rules=rules)
    findings = {finding.layer for finding in VerifyGroupedConvPass(rules=rules, lite=False)(graph).findings
                if finding.rule in PLACEMENT_RULES}
    report = estimate(graph, profile)
    fused = {key for key in graph.dag if "fused_into" in graph.node(key).meta}   # they follow their conv
    fallbacks = {layer.name for layer in report.layers if layer.placement != ACCELERATOR and layer.name not in fused}
    assert findings == fallbacks
