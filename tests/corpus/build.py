"""Build the corpus of third-party segmentation models as ONNX files (issue 15).

Usage: `python tests/corpus/build.py OUT_DIR [NAME ...] [--force]` writes `OUT_DIR/<name>.onnx`
for every entry of `tests.corpus.models.SPECS` (or the named ones), a `<name>.json` sidecar
(spec fingerprint; reused as a cache key, so a second run only rebuilds what changed) and
`OUT_DIR/INDEX.txt` (name, input shape, exporter, source). Random weights, no downloads.

Importable: `build(spec, out_dir)` returns the path of one model, building it if needed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tests.corpus` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.corpus.models import BY_NAME, SPECS, Spec, shipped_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub, ever
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def fingerprint(spec: Spec) -> dict:
    """What the exported file depends on: the spec and the exporting library versions."""
    import importlib.metadata as md

    versions = {}
    for package in ("torch", "torchvision", "segmentation_models_pytorch", "transformers", "timm",
                    "rapidocr-onnxruntime", "onnxscript"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return {"name": spec.name, "source": spec.source, "input_shape": list(spec.input_shape),
            "exporter": spec.exporter, "dynamic_hw": spec.dynamic_hw, "opset": spec.opset,
            "shipped": spec.shipped, "versions": versions, "builder": 2}


def _export(spec: Spec, path: Path) -> Any:
    """Export `spec`'s module to `path`; returns the module."""
    import torch

    module = spec.factory()
    example = torch.randn(*spec.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = module(example)
    names = [f"out{i}" for i in range(len(out))] if isinstance(out, tuple) else ["out"]
    kwargs: dict = {"input_names": ["input"], "output_names": names, "opset_version": spec.opset}
    with torch.no_grad():
        if spec.exporter == "dynamo":
            if spec.dynamic_hw:
                dim = torch.export.Dim
                kwargs["dynamic_shapes"] = ({2: dim("H", min=32, max=2048), 3: dim("W", min=32, max=2048)},)
            kwargs["opset_version"] = max(spec.opset, 18)
            program = torch.onnx.export(module, (example,), dynamo=True, verbose=False, **kwargs)
            program.save(str(path), external_data=False)
        else:
            if spec.dynamic_hw:
                kwargs["dynamic_axes"] = {"input": {2: "H", 3: "W"}, **{n: {2: "H_out", 3: "W_out"} for n in names}}
            torch.onnx.export(module, (example,), str(path), dynamo=False, do_constant_folding=True, **kwargs)
    return module


def _truth(spec: Spec, path: Path, module: Any) -> dict:
    """The reference MAC count stored beside the model (see truth.py and runtime_count.py)."""
    if module is None:
        from tests.corpus.runtime_count import runtime_macs

        counts = runtime_macs(str(path), {spec.input_name: spec.input_shape})
        return {"macs": sum(counts.values()), "by_op": counts, "method": "onnxruntime runtime shapes"}
    from tests.corpus.truth import count_truth

    truth = count_truth(module, spec.input_shape)
    assert truth.inside_check == truth.conv + truth.linear, (spec.name, truth)  # hooks agree with flop_counter
    return {"macs": truth.macs, "conv": truth.conv, "linear": truth.linear, "functional": truth.functional,
            "method": "torch forward hooks + torch.utils.flop_counter (sdpa math kernel)"}


def truth_of(spec: Spec, out_dir: str | os.PathLike) -> dict:
    """The stored truth of a built model ({"macs": int, ...}); builds it first if needed."""
    build(spec, out_dir)
    return json.loads((Path(out_dir) / f"{spec.name}.json").read_text())["truth"]


def build(spec: Spec, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Return `out_dir/<spec.name>.onnx`, exporting (or copying, for shipped files) it if stale."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.onnx"
    sidecar = out_dir / f"{spec.name}.json"
    wanted = fingerprint(spec)
    if not force and path.is_file() and sidecar.is_file():
        try:
            if json.loads(sidecar.read_text())["fingerprint"] == wanted and path.stat().st_size:
                return path
        except (ValueError, KeyError):
            pass
    tmp = path.with_suffix(".onnx.tmp")
    started = time.process_time()
    module = None
    if spec.exporter == "shipped":
        shutil.copyfile(shipped_path(spec), tmp)
    else:
        module = _export(spec, tmp)
    truth = _truth(spec, tmp, module)
    os.replace(tmp, path)
    sidecar.write_text(json.dumps({"fingerprint": wanted, "truth": truth,
                                   "build_cpu_s": round(time.process_time() - started, 2)}, indent=1))
    return path


def write_index(out_dir: str | os.PathLike, specs=SPECS) -> Path:
    """`INDEX.txt`: one line per model: name, input shape, exporter, dynamic H/W, source."""
    lines = ["# name\tinput_shape\texporter\tdynamic_hw\tsource\ttruth_macs"]
    for spec in specs:
        where = {"smp": "segmentation-models-pytorch (encoder_weights=None)",
                 "transformers": "HF transformers (config object, random weights, no hub)",
                 "torchvision": "torchvision (weights=None, weights_backbone=None)",
                 "rapidocr": f"rapidocr-onnxruntime package models/{spec.shipped} (as shipped; dynamic dims)",
                 }[spec.source]
        dyn = "HxW symbolic" if spec.dynamic_hw or spec.source == "rapidocr" else "static"
        sidecar = Path(out_dir) / f"{spec.name}.json"
        truth = json.loads(sidecar.read_text()).get("truth", {}).get("macs", "") if sidecar.is_file() else ""
        exporter = {"legacy": "torch.onnx dynamo=False",
                    "dynamo": "torch.onnx dynamo=True"}.get(spec.exporter, "shipped")
        lines.append(f"{spec.name}\t{spec.input_shape_arg}\t{exporter}\t{dyn}\t{where}\t{truth}")
    index = Path(out_dir) / "INDEX.txt"
    index.write_text("\n".join(lines) + "\n")
    return index


def main(argv: list[str]) -> int:
    force = "--force" in argv
    args = [a for a in argv if a != "--force"]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir, names = Path(args[0]), args[1:]
    specs = [BY_NAME[name] for name in names] if names else list(SPECS)
    for spec in specs:
        started = time.time()
        try:
            path = build(spec, out_dir, force=force)
        except Exception as error:  # noqa: BLE001 - report every model, keep going
            print(f"FAIL {spec.name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            continue
        print(f"ok   {spec.name:36s} {path.stat().st_size / 1e6:7.2f} MB  {time.time() - started:6.1f} s  "
              f"truth {truth_of(spec, out_dir)['macs']:,} MACs")
    write_index(out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
