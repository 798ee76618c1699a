"""How well do the tda4vm and am62a profiles predict TI's published device times?

For every reference model of segcost/targets/references/<soc>.csv (TI golden references: whole-
model "Total time" per inference, 8-bit, measured on the EVM; the median of all published values
per model) this prints the measured time beside three predictions:

* shipped — the profile as shipped (profiles/<soc>.toml; fitted to these same references, in-sample);
* LOO     — leave-one-out: the pre-calibration base profile (references/<soc>-base.toml) fitted
            (segcost.targets.device_fit) on all the OTHER reference models of that SoC, then asked about this one;
* MACs    — a MACs-only predictor, ms = a·MACs with a fitted leave-one-out as well;

and for each column Spearman's rho against the measured times and the median |ln(pred/meas)|.
Targets: LOO median |ln| ≤ 0.25 and rho ≥ 0.9 on both SoCs, better than MACs-only.

The networks are built with random weights (torchvision weights=None, timm, segcost's zoo) at
TI's input sizes and exported once into benchmarks/_models/device_reference/ (needs the torch
extra). --write-profiles DIR writes the profiles fitted on all references of each SoC (what
profiles/tda4vm.toml and am62a.toml ship).

    python benchmarks/device_reference.py [--write-profiles DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "benchmarks" / "_models" / "device_reference"
REFERENCES = REPO / "segcost" / "targets" / "references"
# SoC → (pre-calibration base profile: the assumptions the fits start from and are pulled towards, reference CSV)
SOCS = {"tda4vm": (REFERENCES / "tda4vm-base.toml", REFERENCES / "tda4vm.csv"),
        "am62a": (REFERENCES / "am62a-base.toml", REFERENCES / "am62a.csv")}


def _build(name: str):
    """(module, input shape) of a reference model id (see segcost/targets/references/README.md)."""
    import torchvision

    from segcost.zoo.registry import get

    if name == "squeezenet1_1":
        return torchvision.models.squeezenet1_1(weights=None), (1, 3, 224, 224)
    if name == "resnet18":
        return torchvision.models.resnet18(weights=None), (1, 3, 224, 224)
    if name == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(weights=None), (1, 3, 224, 224)
    if name == "inception_v3":
        return torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False), (1, 3, 299, 299)
    if name == "mobilenet_v1":
        import timm

        return timm.create_model("mobilenetv1_100", pretrained=False), (1, 3, 224, 224)
    if name.startswith("mnv2s16_deeplabv3lite"):
        return get("MobileNetV2S16+DeepLabV3Lite").build(32), (1, 3, 512, 512)
    if name == "regnetx800mf_fpnlite":
        return get("RegNetX800MF+FPNLite").build(21), (1, 3, 512, 512)
    raise SystemExit(f"no builder for reference model {name!r}")


def _drop_final_upsample(path: Path) -> None:
    """Make the graph's output the input of its final Resize (TI's `_outby4` export of the same network)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    (output,) = graph.output
    last = next(node for node in graph.node if output.name in node.output)
    if last.op_type != "Resize":
        raise SystemExit(f"{path}: the last node is {last.op_type}, not the final upsample")
    graph.node.remove(last)
    graph.output.remove(output)
    graph.output.append(onnx.helper.make_empty_tensor_value_info(last.input[0]))
    onnx.save(model, str(path))


def model_path(name: str) -> Path:
    """The exported ONNX file of a reference model (exported on first use)."""
    path = MODELS_DIR / f"{name}.onnx"
    if not path.exists():
        from segcost.frontends.torch import export

        MODELS_DIR.mkdir(parents=True, exist_ok=True)
        module, shape = _build(name)
        print(f"exporting {name} {'x'.join(map(str, shape))}", file=sys.stderr)
        export(module, shape, path)
        if name.endswith("_outby4"):
            _drop_final_upsample(path)
    return path


def samples_for(csv_path: Path, rules: str | None):
    from segcost.frontends import onnx as onnx_frontend
    from segcost.pipeline import build_pipeline
    from segcost.targets.cost_model import prepare
    from segcost.targets.device_fit import DeviceSample, read_reference

    samples = []
    for name, reference in sorted(read_reference(csv_path).items()):
        graph = build_pipeline()(onnx_frontend.load(model_path(name))).graph
        samples.append(DeviceSample(name, prepare(graph, rules), reference.median_ms))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-profiles", type=Path, help="Write the profiles fitted on all references here.")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from segcost.targets.cost_model import estimate_prepared
    from segcost.targets.device_fit import (
        fit_device,
        fitted_profile_text,
        leave_one_out,
        macs_only_leave_one_out,
        median_abs_log,
        spearman,
    )
    from segcost.targets.profile_toml import load_profile, profile_text

    for soc, (base_path, csv_path) in SOCS.items():
        base = load_profile(str(base_path))
        samples = samples_for(csv_path, base.rules)
        shipped_profile = load_profile(soc)
        shipped = {sample.name: estimate_prepared(sample.prepared, shipped_profile).totals.latency_ms
                   for sample in samples}
        loo = leave_one_out(samples, base)
        macs = macs_only_leave_one_out(samples)
        measured = [sample.measured_ms for sample in samples]
        rows = [[sample.name, f"{sample.macs / 1e9:.2f}", f"{sample.measured_ms:.2f}", f"{shipped[sample.name]:.2f}",
                 f"{loo[sample.name]:.2f}", f"{macs[sample.name]:.2f}"] for sample in samples]
        print(f"\n{soc} ({len(samples)} models; measured = median of TI's published 'Total time', ms)")
        print(tabulate(rows, headers=["model", "GMACs", "measured", "shipped", "LOO", "MACs-only LOO"],
                       disable_numparse=True))
        for label, predicted in (("shipped", shipped), ("LOO", loo), ("MACs-only LOO", macs)):
            values = [predicted[sample.name] for sample in samples]
            print(f"{label:14s} Spearman {spearman(values, measured):.3f}   median |ln(pred/meas)| "
                  f"{median_abs_log(values, measured):.3f}")
        if args.write_profiles:
            fit = fit_device(samples, base)
            args.write_profiles.mkdir(parents=True, exist_ok=True)
            text = fitted_profile_text(fit, profile_text(str(base_path)), csv_path.name, samples, loo)
            (args.write_profiles / f"{soc}.toml").write_text(text)
            print(f"wrote {args.write_profiles / f'{soc}.toml'}")


if __name__ == "__main__":
    main()
