"""TIDL target rules: every restriction tidl-rules.toml quotes is checked, and `cost` places exactly those layers
on the fallback core."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.passes import VerifyGroupedConvPass
from tests.passes.helpers import load


def _model(nodes, inits, x_shape=(1, 16, 32, 32)):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_empty_tensor_value_info("y")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _resize(scales, x_shape=(1, 16, 32, 32)):
    return _model([helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest", name="layer",  # as torch writes it
                                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
                  [_const("s", scales)], x_shape)


def _binary(op_type, inputs, constant_shape=(1,)):
    return _model([helper.make_node(op_type, inputs, ["y"], name="layer")], [_const("c", np.full(constant_shape, 2.0))])


def _conv(kernel, stride, dilation=(1, 1), channels=16, group=1, op_type="Conv"):
    weight = np.zeros((channels, channels // group, *kernel), np.float32)   # Conv: [C_out, C_in/g]; CT: [C_in, C_out/g]
    node = helper.make_node(op_type, ["x", "w"], ["y"], name="layer", strides=list(stride),
                            dilations=list(dilation), group=group)
    return _model([node], [numpy_helper.from_array(weight, "w")], (1, channels, 32, 32))


def _rules(model, rules="current"):
    return sorted(finding.rule for finding in VerifyGroupedConvPass(rules=rules, lite=False)(load(model)).findings)


# The four layers of the breaker's R5 report: each contradicts a sentence of TI's document.
R5 = {
    "resize 2x4 (not symmetric)": (lambda: _resize([1, 1, 2, 4]), ["resize-symmetric"]),
    "resize of the channel axis": (lambda: _resize([1, 2, 2, 2]), ["resize-axis"]),
    "c / x (a reciprocal)": (lambda: _binary("Div", ["c", "x"]), ["binary-constant-form"]),
    "dilated 2x2 s2 ConvTranspose": (lambda: _conv((2, 2), (2, 2), (2, 2), op_type="ConvTranspose"),
                                     ["conv-transpose-shape"]),
}


@pytest.mark.parametrize("rules", ["current", "tvm-tidl", "legacy"])
@pytest.mark.parametrize("case", sorted(R5))
def test_r5_layers_are_findings_under_every_rule_set(case, rules):
    build, expected = R5[case]
    if rules == "current" and case == "c / x (a reciprocal)":
        expected = []     # SDK 11.00 row 5: Div is an eltwise layer; only Sub's constant operand is restricted
    assert _rules(build(), rules) == expected


@pytest.mark.parametrize("scales,expected", [
    ([1, 1, 2, 2], []), ([1, 1, 8, 8], []), ([1, 1, 1, 1], []),
    ([1, 1, 3, 3], ["resize-scale", "resize-scale"]),
    ([1, 1, 0.5, 0.5], ["resize-scale", "resize-scale"]),   # "Scales < 1 are not supported"
    ([1, 1, 1, 2], ["resize-symmetric"]),
    ([2, 1, 2, 2], ["resize-axis"]),
])
def test_resize_scales(scales, expected):
    assert _rules(_resize(scales)) == expected


def test_resize_with_dynamic_size_reads_its_scales():
    # H and W unknown: the output shape cannot tell, the scales initializer still does
    assert _rules(_resize([1, 1, 2, 4], x_shape=(1, 16, "h", "w"))) == ["resize-symmetric"]
    assert _rules(_resize([1, 1, 2, 2], x_shape=(1, 16, "h", "w"))) == []


@pytest.mark.parametrize("op_type", ["Sub", "Div"])
@pytest.mark.parametrize("inputs,shape,legacy,sub_current", [
    (["x", "c"], (1,), [], []),                       # scalar: x op c is a BatchNorm
    (["x", "c"], (1, 16, 1, 1), [], []),              # per channel
    (["x", "c"], (16, 1, 1), [], []),                 # per channel, right-aligned
    (["x", "c"], (1, 1, 32, 32), ["binary-constant-form"], ["binary-constant-form"]),   # per pixel
    (["x", "c"], (32,), ["binary-constant-form"], []),   # along W: SDK 11.00 "match with channel or width"
    (["c", "x"], (1, 16, 1, 1), ["binary-constant-form"], ["binary-constant-form"]),    # c - x, c / x
])
def test_sub_div_constant_operand_forms(op_type, inputs, shape, legacy, sub_current):
    assert _rules(_binary(op_type, inputs, shape), "legacy") == legacy
    # SDK 11.00 row 5 restricts Sub's constant only; Div is an eltwise layer
    assert _rules(_binary(op_type, inputs, shape), "current") == (sub_current if op_type == "Sub" else [])


@pytest.mark.parametrize("kernel,stride,dilation,legacy,tvm,current", [
    # SDK 9.2 "only supported for non-strided"; SDK 11.00 row 1 no longer says so
    ((3, 3), (2, 2), (2, 2), ["conv-dilation"], ["conv-dilation"], []),
    ((3, 3), (1, 1), (2, 2), [], [], []),
    ((7, 7), (4, 4), (1, 1), ["conv-stride"], ["conv-stride"], ["conv-stride"]),   # "stride 4 ... only 11x11"
    ((11, 11), (4, 4), (1, 1), [], [], []),
    ((4, 4), (4, 4), (1, 1), [], [], []),             # NxN at stride N: patch embedding, even kernel allowed
    ((2, 2), (2, 2), (1, 1), [], [], []),
    ((2, 2), (1, 1), (1, 1), ["even-kernel"], ["even-kernel"], []),   # SDK 11.00 row 1 drops the even-kernel limit
    ((3, 3), (1, 2), (1, 1), [], ["conv-stride"], ["conv-stride"]),   # "Stride must match/be the same along both"
])
def test_conv_stride_and_dilation(kernel, stride, dilation, legacy, tvm, current):
    model = _conv(kernel, stride, dilation)
    assert (_rules(model, "legacy"), _rules(model, "tvm-tidl"), _rules(model, "current")) == (legacy, tvm, current)


def test_softmax_depth_to_space_and_pooling():
    softmax = _model([helper.make_node("Softmax", ["x"], ["y"], name="layer", axis=1)], [])
    assert _rules(softmax, "legacy") == _rules(softmax, "current") == ["softmax-axis"]
    height = _model([helper.make_node("Softmax", ["x"], ["y"], name="layer", axis=-2)], [])
    assert (_rules(height, "legacy"), _rules(height, "current")) == (["softmax-axis"], [])
    d2s = _model([helper.make_node("DepthToSpace", ["x"], ["y"], name="layer", blocksize=3)], [], (1, 18, 8, 8))
    assert (_rules(d2s, "tvm-tidl"), _rules(d2s, "current")) == (["depth-to-space"], [])   # 11.00: no blocksize limit
    big = _model([helper.make_node("GlobalAveragePool", ["x"], ["y"], name="layer")], [], (1, 16, 64, 64))
    assert (_rules(big, "legacy"), _rules(big, "current")) == ([], ["global-pool-plane"])
    assert _rules(_model([helper.make_node("GlobalAveragePool", ["x"], ["y"], name="layer")], [])) == []
    pool = _model([helper.make_node("MaxPool", ["x"], ["y"], name="layer", kernel_shape=[3, 3], dilations=[2, 2])],
                  [])
    assert (_rules(pool, "legacy"), _rules(pool, "current")) == ([], ["pool-dilation"])


def test_every_table_key_is_checked(monkeypatch):
    from segcost.errors import InputError
    from segcost.passes import target_rules

    for name in target_rules.rule_set_names():
        assert target_rules.load_rules(name).not_enforced   # what is not checked is said, with why
    table = target_rules._rules_file()
    edited = {**table, "rulesets": {**table["rulesets"],
                                    "tidl-09.02": {**table["rulesets"]["tidl-09.02"], "max_dilation": 4}}}
    monkeypatch.setattr(target_rules, "_rules_file", lambda: edited)
    target_rules.load_rules.cache_clear()
    try:
        with pytest.raises(InputError, match="unknown keys \\['max_dilation'\\]"):
            target_rules.load_rules("legacy")
    finally:
        monkeypatch.undo()
        target_rules.load_rules.cache_clear()


@pytest.mark.parametrize("case", sorted(R5))
def test_cost_places_the_r5_layers_on_the_fallback_core(case):
    from segcost.targets.cost_model import ACCELERATOR, estimate, load_profile

    build, _ = R5[case]
    graph = load(build())
    report = estimate(graph, load_profile("tda4vm"))
    # exactly the verifier's findings under the profile's rule set ("current") run on the fallback core
    assert [layer.placement != ACCELERATOR for layer in report.layers] == [bool(_rules(build(), "current"))]
    clean = estimate(load(_resize([1, 1, 2, 2])), load_profile("tda4vm"))
    assert [layer.placement for layer in clean.layers] == [ACCELERATOR]


def test_every_rule_set_field_is_read_by_a_check():
    # the loader refuses keys RuleSet lacks; this closes the loop: each RuleSet field is read by verify_target
    import dataclasses
    import inspect

    from segcost.passes import target_op_checks, target_rules, verify_target

    source = inspect.getsource(verify_target) + inspect.getsource(target_op_checks)
    descriptive = {"name", "description", "source", "not_enforced"}
    unread = [item.name for item in dataclasses.fields(target_rules.RuleSet)
              if item.name not in descriptive and f"rules.{item.name}" not in source]
    assert unread == []


# breaker7 R5: TI's table lists LayerNorm and GELU as op sequences (TIDL_LayernormLayer, GELU imported as
# batchnorm); their ops alone are not supported. HardSwish is in no row of the SDK 9.2 table.
def _layernorm(axis=-1, exponent=2.0, x_shape=(1, 16, 32, 32)):
    """ReduceMean-Sub-Pow(2)-ReduceMean-Add-Sqrt-Div over `axis`, as torch exports nn.LayerNorm at opset 13-17."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], name="mean", axes=[axis]),
             helper.make_node("Sub", ["x", "mean"], ["d"], name="sub"),
             helper.make_node("Pow", ["d", "two"], ["sq"], name="pow"),
             helper.make_node("ReduceMean", ["sq"], ["var"], name="var", axes=[axis]),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="add"),
             helper.make_node("Sqrt", ["ve"], ["std"], name="sqrt"),
             helper.make_node("Div", ["d", "std"], ["y"], name="div")]
    return _model(nodes, [_const("two", exponent), _const("eps", 1e-5)], x_shape)


def _gelu(first="Div"):
    """x * 0.5 * (1 + erf(x / sqrt 2)) as torch exports nn.GELU (Div) or with a Mul by 1/sqrt 2."""
    nodes = [helper.make_node(first, ["x", "root"], ["s"], name="scale"),
             helper.make_node("Erf", ["s"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["e1"], name="add"),
             helper.make_node("Mul", ["x", "e1"], ["m"], name="mul"),
             helper.make_node("Mul", ["m", "half"], ["y"], name="half")]
    root = 2 ** 0.5 if first == "Div" else 2 ** -0.5
    return _model(nodes, [_const("root", root), _const("one", 1.0), _const("half", 0.5)])


@pytest.mark.parametrize("rules", ["current", "legacy"])
@pytest.mark.parametrize("build", [lambda: _layernorm(-1), lambda: _layernorm(3), lambda: _gelu("Div"),
                                   lambda: _gelu("Mul")], ids=["ln-axis-1", "ln-axis-3", "gelu-div", "gelu-mul"])
def test_ti_layernorm_and_gelu_sequences_run_on_the_accelerator(build, rules):
    assert _rules(build(), rules) == []


@pytest.mark.parametrize("build,expected", [
    (lambda: _layernorm(1), ["binary-nonconstant", "binary-nonconstant", "unsupported-op", "unsupported-op",
                             "unsupported-op", "unsupported-op"]),          # channel axis: not TI's layer
    (lambda: _layernorm(-1, exponent=3.0), ["binary-nonconstant", "binary-nonconstant", "unsupported-op",
                                            "unsupported-op", "unsupported-op", "unsupported-op"]),
    (lambda: _model([helper.make_node("Erf", ["x"], ["y"], name="erf")], []), ["unsupported-op"]),
], ids=["ln-channel-axis", "pow-3", "erf-alone"])
def test_sequences_that_are_not_ti_layers_keep_their_findings(build, expected):
    assert _rules(build(), "legacy") == expected


def test_hardswish_runs_only_where_ti_lists_it():
    model = _model([helper.make_node("HardSwish", ["x"], ["y"], name="hs")], [])
    assert _rules(model, "legacy") == ["unsupported-op"]     # SDK 9.2 table: in no row
    assert _rules(model, "current") == []                    # SDK 11.00 row 44: TIDL_HardSwishLayer


def test_cost_places_the_layernorm_sequence_on_the_accelerator():
    from segcost.pipeline import estimate_on_target

    for model, placement in ((_layernorm(-1), {"accelerator"}), (_layernorm(1), {"accelerator", "arm"})):
        result = estimate_on_target(load(model), "tda4vm", fuse=False)
        assert {layer.placement for layer in result.layers} == placement
