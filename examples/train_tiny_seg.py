"""Train a tiny MobileNetV2(S16) + DeepLabV3Lite on procedural shapes and export it to ONNX.

Everything runs offline on the CPU in a few minutes: the data come from
segcost.data.SyntheticShapes (deterministic per seed, no download), the model from
segcost.data.tiny_model. The script prints the training loss, the validation mIoU of
the PyTorch model and of the exported ONNX model (run by onnxruntime, so a later int8
model can be compared against the same number), and writes OUT plus OUT.json with the
scores, steps and timings.

    python examples/train_tiny_seg.py --out /tmp/tiny_seg.onnx [--steps N] [--size 96] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Idle OpenMP threads must sleep, not spin, or a second thread costs far more than it
# gives whenever another process wants a core: on a busy 2-core machine, measured
# 0.2 s/step with passive waiting against 3 s/step with the default. Set before torch
# loads its OpenMP runtime; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from segcost.data import SyntheticShapes, class_iou, confusion_matrix, miou_from_confusion  # noqa: E402
from segcost.data.tiny_model import TinySegNet, balanced_class_weights, evaluate, train  # noqa: E402
from segcost.frontends.torch import export  # noqa: E402


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tiny_seg.onnx"), help="ONNX file to write")
    parser.add_argument("--steps", type=int, default=1200, help="optimizer steps")
    parser.add_argument("--size", type=int, default=96, help="square image size, a multiple of 16")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data set and the initial weights")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-2, help="Adam's peak learning rate")
    parser.add_argument("--class-weight-power", type=float, default=0.25,
                        help="cross-entropy class weights frequency**-POWER (0: unweighted)")
    parser.add_argument("--num-classes", type=int, default=5, help="background + shapes, 2..6")
    parser.add_argument("--val-samples", type=int, default=500, help="validation images to score")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    arguments = parser.parse_args(argv)
    if arguments.size % 16:
        parser.error("--size must be a multiple of 16 (the model's output stride)")
    return arguments


def onnx_confusion(path: Path, dataset: SyntheticShapes, indices: range, batch_size: int = 32) -> np.ndarray:
    """Confusion matrix of the exported model, run by onnxruntime one image at a time.

    The export has a fixed batch of 1, so each image is fed alone; batching only groups
    the procedural rendering.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    confusion = np.zeros((dataset.num_classes, dataset.num_classes), dtype=np.int64)
    for first in range(0, len(indices), batch_size):
        images, labels = dataset.batch(indices[first:first + batch_size])
        for image, label in zip(images, labels):
            (logits,) = session.run(None, {input_name: image[None]})
            confusion += confusion_matrix(logits[0].argmax(axis=0), label, dataset.num_classes)
    return confusion


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    torch.set_num_threads(arguments.threads)
    torch.manual_seed(arguments.seed)
    started = time.perf_counter()

    dataset = SyntheticShapes(arguments.num_classes, arguments.size, arguments.size, seed=arguments.seed)
    model = TinySegNet(num_classes=arguments.num_classes)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"TinySegNet ({parameters:,} parameters), {arguments.size}×{arguments.size}, "
          f"{arguments.num_classes} classes, {arguments.steps} steps × {arguments.batch_size} images, "
          f"{arguments.threads} threads")

    weights = (balanced_class_weights(dataset, power=arguments.class_weight_power)
               if arguments.class_weight_power else None)
    losses = train(model, dataset, arguments.steps, batch_size=arguments.batch_size,
                   learning_rate=arguments.learning_rate, class_weights=weights)
    train_seconds = time.perf_counter() - started

    val_indices = dataset.split("val")[:arguments.val_samples]
    confusion = evaluate(model, dataset, val_indices)
    val_miou = miou_from_confusion(confusion)
    per_class = dict(zip(dataset.class_names, class_iou(confusion).tolist()))
    print(f"val mIoU {100 * val_miou:.2f}% over {len(val_indices)} images  ("
          + ", ".join(f"{name} {100 * iou:.1f}" for name, iou in per_class.items()) + ")")

    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    export(model, (1, 3, arguments.size, arguments.size), arguments.out)
    onnx_val_miou = miou_from_confusion(onnx_confusion(arguments.out, dataset, val_indices))
    print(f"wrote {arguments.out} ({arguments.out.stat().st_size / 1024:.0f} KiB); "
          f"onnxruntime val mIoU {100 * onnx_val_miou:.2f}%")

    total_seconds = time.perf_counter() - started
    summary = {
        "onnx": str(arguments.out), "val_miou": val_miou, "onnx_val_miou": onnx_val_miou, "class_iou": per_class,
        "val_samples": len(val_indices), "steps": arguments.steps, "batch_size": arguments.batch_size,
        "learning_rate": arguments.learning_rate, "class_weight_power": arguments.class_weight_power,
        "size": arguments.size, "num_classes": arguments.num_classes, "seed": arguments.seed,
        "threads": arguments.threads, "parameters": parameters,
        "final_loss": float(np.mean(losses[-20:])), "train_seconds": round(train_seconds, 1),
        "total_seconds": round(total_seconds, 1),
    }
    summary_path = arguments.out.with_suffix(".json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {summary_path}; {total_seconds:.0f} s in total ({train_seconds:.0f} s training)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
