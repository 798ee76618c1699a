"""analyze --symbolic: MACs as an exact formula of symbolic input dims, checked beyond its probes."""

from __future__ import annotations

import json
from fractions import Fraction

import onnx
import pytest

from segcost.analyzer.symbolic import Symbol, collect_symbols, symbolic_macs
from segcost.errors import InputError
from segcost.samples import deeplabv3lite

N, H, W = Symbol("N", [("x", 0)], 1), Symbol("H", [("x", 2)], 32), Symbol("W", [("x", 3)], 32)


def test_interpolation_is_exact():
    def macs(values):
        return 5 * values["N"] * (3 * values["H"] // 2 + 4) * (values["W"] // 32) + 7

    result = symbolic_macs(macs, [N, H, W])
    assert result.terms == {(1, 1, 1): Fraction(15, 64), (1, 0, 1): Fraction(5, 8), (0, 0, 0): Fraction(7)}
    assert result.formula() == "(15/64)·N·H·W + (5/8)·N·W + 7"
    assert result.evaluate({"N": 3, "H": 640, "W": 96}) == macs({"N": 3, "H": 640, "W": 96})
    assert result.valid_for() == "N ≥ 1, H a multiple of 32, W a multiple of 32"


def test_a_non_polynomial_is_an_error_not_a_wrong_formula():
    with pytest.raises(InputError, match="not a polynomial of degree <= 2"):
        symbolic_macs(lambda values: values["H"] ** 3, [H])
    with pytest.raises(InputError, match="not a polynomial"):
        symbolic_macs(lambda values: 2 ** (values["H"] // 32), [H])


def test_collect_symbols_groups_shared_names_and_names_unnamed_dims():
    symbols = collect_symbols([("a", 0, "batch"), ("b", 0, "batch"), ("a", 2, "?"), ("a", 3, "W")], 16)
    assert [(symbol.name, symbol.step, symbol.places) for symbol in symbols] == [
        ("batch", 1, [("a", 0), ("b", 0)]), ("a[2]", 16, [("a", 2)]), ("W", 16, [("a", 3)])]


@pytest.fixture
def dynamic_model(tmp_path):
    model = deeplabv3lite(width=0.5, num_classes=5)
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "N", "H", "W"
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, path)
    return path


def test_cli_symbolic(run_cli, dynamic_model):
    code, out, _ = run_cli("analyze", str(dynamic_model), "--symbolic", "--format", "json")
    assert code == 0
    document = json.loads(out)["symbolic_macs"]
    assert [symbol["name"] for symbol in document["symbols"]] == ["N", "H", "W"]
    code, concrete, _ = run_cli("analyze", str(dynamic_model), "--input-shape", "input=2x3x544x224", "--format", "json")
    exact = json.loads(concrete)["totals"]["macs"]
    predicted = sum(Fraction(term["coefficient"]) * 2 ** term["exponents"][0] * 544 ** term["exponents"][1]
                    * 224 ** term["exponents"][2] for term in document["terms"])
    assert predicted == exact                           # a size none of the probes used
    code, out, _ = run_cli("analyze", str(dynamic_model), "--symbolic")
    assert code == 0 and "MACs = " in out and "H a multiple of 32" in out
    code, out, _ = run_cli("analyze", str(dynamic_model), "--symbolic", "--input-shape", "input=1x3x256x256")
    assert code == 2                                    # nothing symbolic left
    code, _, err = run_cli("analyze", str(dynamic_model))
    assert code == 2 and "--symbolic" in err and "'N'" in err


def test_a_change_beyond_the_probes_is_caught():
    # a stride-256 layer: 1x1 output up to H = 256, then it grows
    with pytest.raises(InputError, match="try a larger --multiple"):
        symbolic_macs(lambda values: 24 * ((values["H"] - 1) // 256 + 1) ** 2, [H])
