"""`check --verify` and `verify = true` give exactly what `segcost verify` gives (one code path)."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh


def shape_fed_reshape(path) -> str:
    """Conv -> Reshape(conv, Shape(conv)): the Shape folds to a constant; unfolded it is an unsupported op."""
    weight = nh.from_array(np.ones((4, 3, 3, 3), np.float32), "W")
    nodes = [h.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             h.make_node("Shape", ["c"], ["s"], name="shape"),
             h.make_node("Reshape", ["c", "s"], ["y"], name="reshape")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return str(path)


def test_check_verify_agrees_with_verify(run_cli, tmp_path, monkeypatch):
    model = shape_fed_reshape(tmp_path / "m.onnx")
    code, out, _ = run_cli("verify", model, "--format", "json")
    assert code == 0 and json.loads(out)["count"] == 0
    assert run_cli("verify", model, "--no-fuse")[0] == 1   # the unfolded graph has a finding
    code, out, _ = run_cli("check", model, "--verify", "--format", "json")
    assert code == 0 and json.loads(out)["outcomes"][0]["actual"] == 0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "segcost.toml").write_text('[[models]]\npath = "m.onnx"\nverify = true\n')
    assert run_cli("check")[0] == 0


def test_verifier_findings_is_what_both_commands_run(tmp_path):
    from segcost.frontends.onnx import load
    from segcost.pipeline import verifier_findings

    model = shape_fed_reshape(tmp_path / "m.onnx")
    assert verifier_findings(load(model)) == []
    assert [finding.rule for finding in verifier_findings(load(model), fuse=False)] == ["unsupported-op"]
