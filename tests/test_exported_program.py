"""A .pt2 ExportedProgram is analyzed at --input-shape: its own dims decide what it accepts, not an example input.

torch.export fixes every dim not given in dynamic_shapes and bounds the others (range constraints); the
ONNX file the program exports to keeps those dims (sizes or torch.export's symbols), and segcost sets
the user's shape on it as on any .onnx input. Truth: torch's FlopCounterMode at that shape (MACs = FLOPs/2
for these bias-only conv nets, whose bias torch does not count either).
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from segcost.frontends.torch import program_shape_problem  # noqa: E402

pytestmark = pytest.mark.torch


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()


def _truth(shape) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        _net()(torch.zeros(*shape))
    return counter.get_total_flops() // 2


def _save(tmp_path, name, dynamic_shapes=None):
    program = torch.export.export(_net(), (torch.zeros(1, 3, 32, 32),), dynamic_shapes=dynamic_shapes)
    path = tmp_path / name
    torch.export.save(program, str(path))
    return str(path)


def _analyze(run_cli, path, shape):
    return run_cli("analyze", path, "--input-shape", shape, "--format", "json", "--trust-model-code")


def test_dynamic_program_is_analyzed_at_the_given_shape(run_cli, tmp_path):
    """H and W declared dynamic: the given 24x40 is applied (main gave "symbolic dimension 's…'", exit 2)."""
    path = _save(tmp_path, "dynamic.pt2", ({2: torch.export.Dim("H", min=16, max=128),
                                            3: torch.export.Dim("W", min=16, max=128)},))
    code, out, err = _analyze(run_cli, path, "1x3x24x40")
    assert code == 0, err
    result = json.loads(out)
    assert result["totals"]["macs"] == _truth((1, 3, 24, 40)) != _truth((1, 3, 32, 32))
    assert result["model"]["inputs"][0]["shape"] == [1, 3, 24, 40]
    # The progress line names the exporter a program goes through and the opset the file has.
    assert f"(torch.onnx dynamo exporter, opset {result['model']['opset']})" in err
    assert result["model"]["opset"] >= 18
    code, _, err = _analyze(run_cli, path, "1x3x24x200")
    assert code == 2 and len(err.strip().splitlines()) == 2   # the progress line, then the error
    assert "in [16, 128]" in err and "makes it 200" in err and "input axis 3" in err


def test_static_program_at_another_shape_is_refused_naming_both(run_cli, tmp_path):
    """Specialised to 32x32: 24x40 is exit 2 naming both shapes (main: exit 0 with the 32x32 count)."""
    path = _save(tmp_path, "static.pt2")
    code, out, err = _analyze(run_cli, path, "1x3x32x32")
    assert code == 0, err
    assert json.loads(out)["totals"]["macs"] == _truth((1, 3, 32, 32))
    code, out, err = _analyze(run_cli, path, "1x3x24x40")
    assert code == 2 and not out
    error = err.strip().splitlines()[-1]
    assert error.startswith("segcost: error: ") and "Traceback" not in err
    assert "traced for input 1x3x32x32" in error and "1x3x24x40" in error and "axes 2, 3" in error


def test_program_shape_problem_follows_derived_and_shared_dims():
    """A derived Dim (8·k, H and W sharing it) takes a size only as a multiple of 8, the same for both,
    within k's range; a fixed batch must match."""
    k = torch.export.Dim("k", min=2, max=8)
    program = torch.export.export(_net(), (torch.zeros(1, 3, 32, 32),), dynamic_shapes=({2: 8 * k, 3: 8 * k},))
    assert program_shape_problem(program, (1, 3, 24, 24)) == ""
    assert program_shape_problem(program, (1, 3, 64, 64)) == ""
    assert "no integer" in program_shape_problem(program, (1, 3, 20, 20))
    assert "gives 40" in program_shape_problem(program, (1, 3, 24, 40))     # H and W tied to one k
    assert "in [16, 64]" in program_shape_problem(program, (1, 3, 72, 72))  # k = 9 is out of [2, 8]
    assert "fixed axis 0" in program_shape_problem(program, (2, 3, 24, 24))
    assert "rank 4" in program_shape_problem(program, (1, 3, 24))


def test_an_unbounded_dynamic_dim_is_refused_below_two():
    """Dim.AUTO has no upper bound ("int_oo" in torch's ranges) and, like every dynamic dim, a lower one of 2."""
    program = torch.export.export(_net(), (torch.zeros(2, 3, 32, 32),),
                                  dynamic_shapes=({0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO},))
    assert program_shape_problem(program, (64, 3, 1000, 32)) == ""
    problem = program_shape_problem(program, (1, 3, 32, 32))
    assert "(input axis 0) >= 2 only" in problem and "not to be 0 or 1" in problem and "int_oo" not in problem
