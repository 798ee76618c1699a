"""CSV cells that a spreadsheet would run as formulas are escaped, in every CSV segcost writes (breaker6 R10b)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import segcost
from segcost.fileio.csvtext import SafeDictWriter, csv_cell

PACKAGE = Path(segcost.__file__).parent
NAMES = ['=HYPERLINK("http://example.com","click")', "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1+1", "\r=1+1",
         "\uff1d1+1"]


def named_relus(path: Path) -> str:
    """A chain of Relus named like spreadsheet formulas, behind one Conv."""
    weight = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "W")
    nodes = [helper.make_node("Conv", ["x", "W"], ["t0"], name="conv")]
    for index, name in enumerate(NAMES):
        nodes.append(helper.make_node("Relu", [f"t{index}"], [f"t{index + 1}" if index + 1 < len(NAMES) else "y"],
                                      name=name))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_analyze_csv_escapes_layer_names_that_are_formulas(run_cli, tmp_path):
    code, out, err = run_cli("analyze", named_relus(tmp_path / "m.onnx"), "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    names = [row["name"] for row in rows]
    assert names == ["conv", *("'" + name.replace("\r", "\n") for name in NAMES)]
    assert all(int(row["macs"]) >= 0 for row in rows)   # numbers stay numbers


@pytest.mark.parametrize("value,line", [(-5, "-5"), (-0.25, "-0.25"), (None, '""'), ("conv", "conv"),
                                        ("-", "'-"), ("a=b", "a=b"), ("a\r=b", '"a\n=b"'), ("\r=1", "\"'\n=1\"")])
def test_numbers_are_written_as_they_are_and_only_leading_characters_count(value, line):
    """A lone CR would be left unquoted by csv with "\n" line ends: a spreadsheet starts a row (a first cell) there."""
    buffer = io.StringIO()
    writer = SafeDictWriter(buffer, ["cell"], lineterminator="\n")
    writer.writerows([{"cell": value}])
    assert buffer.getvalue() == line + "\n"
    if isinstance(value, (int, float)):
        assert csv_cell(value) is value


def test_no_module_writes_csv_but_through_the_escaping_writers():
    writers = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
               if path.name != "csvtext.py" and re.search(r"csv\.(writer|DictWriter)\s*\(", path.read_text())]
    assert writers == []
