"""Third-party segmentation models analyze exactly (issue 15): the corpus in CI.

Each model of `tests.corpus.models.SPECS` is built once per session into a cache directory
(`$SEGCOST_CORPUS_DIR`, else pytest's cache) with random weights and no downloads; its truth
is stored beside it (PyTorch hooks + flop counter, or onnxruntime runtime shapes for the shipped
PP-OCR files). For every model: `analyze` equals the truth exactly and `--strict` passes;
`optimize` (with its onnxruntime numeric check), `verify` and `cost` run without error; dynamic
H/W exports give an `--symbolic` formula that equals the truth at the export size.

Cases that fail only because another part of issue 15 has not landed are xfail(strict=True)
naming that item, so they turn into a failure to un-mark as soon as it is merged.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("transformers")
pytest.importorskip("rapidocr_onnxruntime")

from tests.corpus.build import build, truth_of
from tests.corpus.models import SPECS, Spec

pytestmark = pytest.mark.torch

KNOWN_GAPS: dict[tuple[str, str], str] = {}   # (model, check) -> reason; empty since the Einsum rule landed


def _params(check: str, specs=SPECS):
    params = []
    for spec in specs:
        marks = [pytest.mark.slow] if spec.slow else []
        if (spec.name, check) in KNOWN_GAPS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[spec.name, check]))
        params.append(pytest.param(spec, id=spec.name, marks=marks))
    return params


@pytest.fixture(scope="session")
def corpus_dir(request, tmp_path_factory) -> Path:
    """Where corpus models are built (reused across sessions when pytest's cache is on)."""
    if os.environ.get("SEGCOST_CORPUS_DIR"):
        return Path(os.environ["SEGCOST_CORPUS_DIR"])
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir("segcost-corpus")) if cache is not None else tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="session")
def corpus(corpus_dir):
    """spec → path of its ONNX file, built on first use."""
    return lambda spec: build(spec, corpus_dir)


def _shape_args(spec: Spec) -> list[str]:
    """`--input-shape` for models with symbolic input dims; none for static ones (they must not need it)."""
    return [] if spec.static_input else ["--input-shape", spec.input_shape_arg]


def _analyze_json(run_cli, path: Path, spec: Spec, *extra: str) -> dict:
    code, out, err = run_cli("analyze", str(path), *_shape_args(spec), "--format", "json", *extra)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("spec", _params("exact"))
def test_analyze_equals_the_truth(spec, corpus, corpus_dir, run_cli):
    path = corpus(spec)
    result = _analyze_json(run_cli, path, spec)
    truth = truth_of(spec, corpus_dir)
    assert result["totals"]["macs"] == truth["macs"], truth
    assert result["coverage"]["unsupported"] == []
    assert not [warning for warning in result.get("warnings", []) if "declares shape" in warning]


@pytest.mark.parametrize("spec", _params("strict"))
def test_strict(spec, corpus, run_cli):
    code, _, err = run_cli("analyze", str(corpus(spec)), *_shape_args(spec), "--strict")
    assert code == 0, err


@pytest.mark.parametrize("spec", _params("optimize"))
def test_optimize_keeps_outputs(spec, corpus, run_cli, tmp_path):
    out = tmp_path / "optimized.onnx"
    code, stdout, err = run_cli("optimize", str(corpus(spec)), "-o", str(out), *_shape_args(spec))
    assert code == 0, err
    assert "onnxruntime check: max |original - optimized|" in stdout + err  # the numeric check ran and passed
    assert out.is_file()


@pytest.mark.parametrize("spec", _params("verify"))
def test_verify_runs(spec, corpus, run_cli):
    """Findings (exit 1) are the verifier's answer on real models; an error (exit 2) is not."""
    code, out, err = run_cli("verify", str(corpus(spec)), *_shape_args(spec), "--format", "json")
    assert code in (0, 1), err
    json.loads(out)


@pytest.mark.parametrize("spec", _params("cost"))
def test_cost_runs(spec, corpus, run_cli):
    code, out, err = run_cli("cost", str(corpus(spec)), *_shape_args(spec), "--format", "json")
    assert code == 0, err
    assert json.loads(out)


@pytest.mark.parametrize("spec", _params("symbolic", [spec for spec in SPECS if spec.dynamic_hw]))
def test_symbolic_formula_equals_the_truth_at_the_export_size(spec, corpus, corpus_dir, run_cli):
    code, out, err = run_cli("analyze", str(corpus(spec)), "--symbolic", "--format", "json")
    assert code == 0, err
    formula = json.loads(out)["symbolic_macs"]
    values = {"H": spec.input_shape[2], "W": spec.input_shape[3]}
    names = [symbol["name"] for symbol in formula["symbols"]]
    assert sorted(names) == ["H", "W"]
    total = Fraction(0)
    for term in formula["terms"]:
        product = Fraction(term["coefficient"])
        for name, power in zip(names, term["exponents"]):
            product *= values[name] ** power
        total += product
    assert total == truth_of(spec, corpus_dir)["macs"]
