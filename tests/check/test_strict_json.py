"""No report may contain NaN or Infinity: one strict JSON writer, and inputs that lead there are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest

from segcost.samples import deeplabv3lite

PACKAGE = Path(__file__).resolve().parents[2] / "segcost"
# json.dumps outside fileio.writes.json_text, each with why it is no report:
PENDING = {
    "sweep/points.py": "a cache-key hash of the point's options, never a report",
}


def _strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_every_json_writer_is_the_strict_helper():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "fileio/writes.py" or relative in PENDING:
            continue
        if re.search(r"\bjson\.dumps?\(", path.read_text()):
            offenders.append(relative)
    assert offenders == [], f"json.dumps outside fileio.writes.json_text: {offenders}"


def test_json_text_refuses_non_finite_numbers():
    from segcost.errors import InputError
    from segcost.fileio.writes import json_text

    assert json_text({"a": 1.5}) == '{\n  "a": 1.5\n}\n'
    for value in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(InputError, match="not a finite number"):
            json_text({"a": [value]})


def test_zero_baseline_is_compared_as_counts_in_valid_json(run_cli, tmp_path, monkeypatch):
    onnx.save_model(deeplabv3lite(width=0.35, num_classes=4, height=64, width_px=64), tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    assert run_cli("baseline", "save", "m.onnx", "-o", "base.json")[0] == 0
    document = json.loads(Path("base.json").read_text())
    document["models"]["m.onnx"]["totals"]["macs"] = 0
    Path("zero.json").write_text(json.dumps(document))
    code, out, _ = run_cli("check", "m.onnx", "--baseline", "zero.json", "--max-increase", "50%",
                           "--format", "json")
    assert code == 1
    macs = next(outcome for outcome in _strict_loads(out)["outcomes"] if outcome["budget"] == "baseline_macs")
    assert macs["unit"] == "MACs" and macs["limit"] == 0 and macs["actual"] > 0 and not macs["passed"]
    code, out, _ = run_cli("check", "m.onnx", "--baseline", "zero.json")
    assert code == 1 and "0 MACs" in out and "inf" not in out.lower()


def test_profile_value_that_overflows_latency_is_refused(run_cli, tmp_path):
    profile = (PACKAGE / "targets" / "profiles" / "tda4vm.toml").read_text()
    assert "\nclock_ghz = " in profile
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(re.sub(r"\nclock_ghz = [0-9.eE+-]+", "\nclock_ghz = 5e-324", profile, count=1))
    onnx.save_model(deeplabv3lite(width=0.35, num_classes=4, height=64, width_px=64), tmp_path / "m.onnx")
    code, out, err = run_cli("cost", str(tmp_path / "m.onnx"), "--target", str(tiny), "--format", "json")
    assert code == 2 and "clock_ghz" in err and "outside" in err and err.count("\n") == 1


def test_exact_int8_match_is_null_sqnr_in_strict_json(run_cli, tmp_path):
    """An int8 model equal to the float one has no noise: SQNR +inf, written as null (RFC 8259 has no Infinity)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    code, out, _ = run_cli("optimize", str(tmp_path / "relu.onnx"), "--int8", "-o", str(tmp_path / "q.onnx"),
                           "--report", str(tmp_path / "report.json"))
    assert code == 0 and "SQNR inf dB" in out   # the text report says it as it is
    accuracy = _strict_loads((tmp_path / "q.accuracy.json").read_text())
    assert accuracy["outputs"][0]["sqnr_db"] is None and accuracy["outputs"][0]["relative_error"] == 0.0
    assert _strict_loads((tmp_path / "report.json").read_text())["int8"] == accuracy


def test_only_named_unbounded_figures_become_null():
    from segcost.errors import InputError
    from segcost.fileio.writes import json_text
    from segcost.reports.passes import unbounded_as_null

    document = {"outputs": [{"sqnr_db": float("inf"), "relative_error": float("inf"), "cosine": 1.0}],
                "mixed": {"kept": [{"sqnr_gain_db": float("inf")}], "calib_sqnr_int8_db": 41.5}}
    assert unbounded_as_null(document) == {"outputs": [{"sqnr_db": None, "relative_error": None, "cosine": 1.0}],
                                           "mixed": {"kept": [{"sqnr_gain_db": None}], "calib_sqnr_int8_db": 41.5}}
    for bug in ({"sqnr_db": float("nan")}, {"sqnr_db": float("-inf")}, {"max_abs_error": float("inf")}):
        with pytest.raises(InputError, match="not a finite number"):
            json_text(unbounded_as_null(bug))
