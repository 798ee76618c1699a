"""Numbers segcost reads from text are ASCII digits in range, and an input shape is given once (breaker6 R10 d-f).

Python's int() took "６４", "٤", "4_0" and " 4"; a dim past int64 failed inside protobuf as
"segcost: error: ValueError: Value out of range"; a repeated --input-shape silently kept the last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.budget.evaluate import parse_percent
from segcost.errors import InputError
from segcost.fileio.numbers import parse_count, parse_decimal, parse_input_shapes
from segcost.sweep.spec import parse_size


@pytest.fixture
def model(tmp_path, monkeypatch) -> str:
    """Conv on an input of symbolic H and W."""
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "W")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1], name="conv")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    return "m.onnx"


def one_clean_error(code: int, err: str, *parts: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("segcost: error: "), err
    assert "Error:" not in lines[0] and "SEGCOST_DEBUG" not in lines[0], err   # no exception class, no crash
    for part in parts:
        assert part in lines[0], err


BAD_DIMS = ["６４", "٤", "4_0", " 4", "4 ", "+4", "0", "-1", "1e3", "", "99999999999999999999",
            str(1 << 63), "9" * 5000]


@pytest.mark.parametrize("dim", BAD_DIMS)
def test_input_shape_dims_are_ascii_digits_in_int64(run_cli, model, dim):
    spec = f"x=1x3x{dim}x8"
    one_clean_error(*run_cli("analyze", model, "--input-shape", spec)[::2], "--input-shape")


def test_the_largest_int64_dim_is_still_counted_exactly(run_cli, model):
    code, out, err = run_cli("analyze", model, "--input-shape", f"x=1x3x{(1 << 63) - 1}x1", "--format", "json")
    assert code == 0, err


@pytest.mark.parametrize("second", ["x=1x3x16x16", "x=1x3x8x8"])
def test_an_input_shape_given_twice_is_refused(run_cli, model, second):
    code, _, err = run_cli("analyze", model, "--input-shape", "x=1x3x8x8", "--input-shape", second)
    one_clean_error(code, err, "given twice", "'x'")


def test_a_budgets_file_shape_goes_through_the_same_parser(run_cli, model):
    Path("segcost.toml").write_text('[[models]]\npath = "m.onnx"\ninput_shape = ["x=1x3x６４x６４"]\nmax_gmacs = 1\n')
    one_clean_error(*run_cli("check")[::2], "--input-shape")


@pytest.mark.parametrize("args", [["profile", "--runs", "٣"], ["analyze", "--top", "4_0"],
                                  ["check", "--max-gmacs", "１"], ["check", "--max-gmacs", "1_0"]])
def test_number_options_take_ascii_digits_only(run_cli, model, args):
    one_clean_error(*run_cli(*args)[::2])


def test_the_helpers():
    assert parse_input_shapes(["x=1x3x8x8", "y=1,2"]) == {"x": (1, 3, 8, 8), "y": (1, 2)}
    assert parse_count("0042", "n") == 42 and parse_decimal("-1.5e3", "d") == -1500.0
    for text in ("４２", "4_2", " 42", "-1"):
        with pytest.raises(InputError):
            parse_count(text, "n")
    for text in ("１.5", "1_0.5", "nan", "inf", "1e400", " 1"):
        with pytest.raises(InputError):
            parse_decimal(text, "d")
    for size in ("６４", "64x٤", "9" * 5000):
        with pytest.raises(InputError):
            parse_size(size, "spec", "sizes")
    assert parse_size("64x32", "spec", "sizes") == (32, 64)
    assert parse_percent("2%") == 2.0
    for percent in ("２%", "2_0%", "nan%"):
        with pytest.raises(InputError):
            parse_percent(percent)
