"""Procedural shapes data set and mIoU: determinism, splits, labels, exact metrics, tiny training."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segcost.data import CLASS_NAMES, SyntheticShapes, class_iou, confusion_matrix, miou, miou_from_confusion, normalize

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_tiny_seg.py"


@pytest.fixture(scope="module")
def shapes() -> SyntheticShapes:
    return SyntheticShapes(num_classes=5, height=64, width=64, seed=3)


def test_a_seed_and_index_always_give_the_same_sample(shapes):
    twin = SyntheticShapes(num_classes=5, height=64, width=64, seed=3)
    for index in (0, 17, 123_456):
        image, label = shapes.render(index)
        twin_image, twin_label = twin.render(index)
        np.testing.assert_array_equal(image, twin_image)
        np.testing.assert_array_equal(label, twin_label)
    other_index, _ = shapes.render(1)
    other_seed, _ = SyntheticShapes(num_classes=5, height=64, width=64, seed=4).render(0)
    assert not np.array_equal(shapes.render(0)[0], other_index)
    assert not np.array_equal(shapes.render(0)[0], other_seed)


def test_images_and_labels_have_the_documented_types_and_ranges(shapes):
    image, label = shapes.render(5)
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert label.shape == (64, 64) and label.dtype == np.uint8
    network_input, network_label = shapes.sample(5)
    assert network_input.shape == (3, 64, 64) and network_input.dtype == np.float32
    np.testing.assert_array_equal(network_input, normalize(image))
    assert network_label.dtype == np.int64
    np.testing.assert_array_equal(network_label, label)
    images, labels = shapes.batch([5, 6])
    assert images.shape == (2, 3, 64, 64) and labels.shape == (2, 64, 64)
    np.testing.assert_array_equal(images[0], network_input)


def test_splits_never_overlap():
    data = SyntheticShapes(train_size=1000, val_size=50, test_size=60)
    splits = {name: set(data.split(name)) for name in ("train", "val", "test")}
    assert [len(splits[name]) for name in ("train", "val", "test")] == [1000, 50, 60]
    assert not splits["train"] & splits["val"] and not splits["train"] & splits["test"]
    assert not splits["val"] & splits["test"]
    with pytest.raises(ValueError, match="unknown split"):
        data.split("holdout")


@pytest.mark.parametrize("num_classes", [2, 5, 6])
def test_labels_stay_in_range_and_every_class_appears_in_a_batch(num_classes):
    data = SyntheticShapes(num_classes=num_classes, height=48, width=80)
    _, labels = data.batch(data.split("val")[:16])
    assert labels.shape == (16, 48, 80)
    np.testing.assert_array_equal(np.unique(labels), np.arange(num_classes))
    assert data.class_names == CLASS_NAMES[:num_classes]


@pytest.mark.parametrize("arguments", [dict(num_classes=1), dict(num_classes=7), dict(height=8), dict(seed=-1)])
def test_bad_parameters_are_refused(arguments):
    with pytest.raises(ValueError):
        SyntheticShapes(**arguments)


def test_the_data_module_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from segcost.data import SyntheticShapes\n"
            "print(SyntheticShapes(height=32, width=32).sample(0)[1].max())")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


def test_miou_is_one_for_a_perfect_prediction():
    label = np.array([[0, 1], [2, 2]])
    assert miou(label, label, num_classes=4) == 1.0  # class 3 is in neither, so it is not averaged


def test_miou_of_a_known_partial_overlap():
    label = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    # class 0: 1 hit of a 2-pixel union; class 1: 2 hits of a 3-pixel union; class 2 absent
    np.testing.assert_array_equal(confusion_matrix(pred, label, 3), [[1, 1, 0], [0, 2, 0], [0, 0, 0]])
    np.testing.assert_array_equal(class_iou(confusion_matrix(pred, label, 3)), [1 / 2, 2 / 3, np.nan])
    assert miou(pred, label, 3) == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)
    # A class only predicted counts, with IoU 0: class 2 here.
    assert miou(np.array([[0, 2, 1, 1]]), label, 3) == pytest.approx((1 / 2 + 1 + 0) / 3, abs=1e-15)


def test_miou_from_an_accumulated_confusion_is_the_miou_of_all_pixels():
    rng = np.random.default_rng(0)
    preds, labels = rng.integers(0, 4, size=(2, 3, 10, 10))
    accumulated = sum(confusion_matrix(pred, label, 4) for pred, label in zip(preds, labels))
    assert miou_from_confusion(accumulated) == miou(preds, labels, 4)


def test_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        confusion_matrix(np.full((2, 2), 2), np.zeros((2, 2), int), 2)
    with pytest.raises(ValueError, match="zero pixels"):
        miou(np.zeros(0, int), np.zeros(0, int), 2)


@pytest.fixture
def one_torch_thread():
    """One thread: on a 2-core machine shared with other jobs, two threads are far slower."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


@pytest.mark.torch
def test_a_few_training_steps_lower_the_loss(one_torch_thread):
    torch = one_torch_thread
    from segcost.data.tiny_model import TinySegNet, train

    torch.manual_seed(0)
    losses = train(TinySegNet(num_classes=5), SyntheticShapes(5, 64, 64), steps=12, batch_size=8, log=None)
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3  # measured: about 0.8 lower


@pytest.mark.torch
def test_the_example_trains_exports_and_onnxruntime_runs_the_model(one_torch_thread, tmp_path, capsys):
    import onnxruntime

    specification = importlib.util.spec_from_file_location("train_tiny_seg", EXAMPLE)
    example = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(example)
    out = tmp_path / "tiny.onnx"
    assert example.main(["--out", str(out), "--steps", "4", "--size", "48", "--batch-size", "4",
                         "--val-samples", "4", "--threads", "1"]) == 0
    assert "val mIoU" in capsys.readouterr().out
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["steps"] == 4 and 0.0 <= summary["val_miou"] <= 1.0
    assert summary["onnx_val_miou"] == pytest.approx(summary["val_miou"], abs=0.02)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    image, _ = SyntheticShapes(5, 48, 48).sample(0)
    (logits,) = session.run(None, {session.get_inputs()[0].name: image[None]})
    assert logits.shape == (1, 5, 48, 48)
