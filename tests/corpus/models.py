"""The corpus: third-party segmentation models segcost must analyze exactly (issue 15).

Every entry is built with random weights and no downloads: segmentation-models-pytorch with
`encoder_weights=None`, Hugging Face transformers from config objects (no hub), torchvision with
`weights=None, weights_backbone=None`; the rapidocr-onnxruntime package's PP-OCR ONNX files are
used as shipped. Sizes are reduced (light encoders, small inputs, shallow transformers) so the
whole corpus builds in CI; a non-square input catches H/W mix-ups.

Nothing here is imported by segcost; torch, smp and transformers are imported inside factories.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SMP_SHAPE = (1, 3, 128, 160)
# Pyramid pooling (bins 1, 2, 3, 6) exports only when the pooled map is a multiple of 6: PSPNet
# (stride 8) and UPerNet (stride 32) get inputs that make it so; DPT needs a square input.


@dataclass(frozen=True)
class Spec:
    """One corpus model.

    Attributes:
        name: file stem in the corpus directory (`<name>.onnx`).
        source: "smp", "transformers", "torchvision" or "rapidocr".
        input_shape: the static input shape the model is exported (or analyzed) at, NCHW.
        factory: builds the torch module (seeded, random weights); None for shipped ONNX files.
        exporter: "legacy" (TorchScript, dynamo=False), "dynamo", or "shipped".
        dynamic_hw: export with symbolic H and W (`--symbolic` is tested on these).
        shipped: file name inside rapidocr_onnxruntime/models for shipped models.
        slow: heavy to build or analyze; marked `slow` in the tests.
        input_name: the model's (single) input.
    """

    name: str
    source: str
    input_shape: tuple[int, ...]
    factory: Callable[[], Any] | None = None
    exporter: str = "legacy"
    dynamic_hw: bool = False
    shipped: str = ""
    slow: bool = False
    opset: int = 17
    input_name: str = "input"

    @property
    def static_input(self) -> bool:
        """True when the ONNX file's input has only numeric dims (exported without dynamic axes)."""
        return not self.dynamic_hw and self.exporter != "shipped"

    @property
    def input_shape_arg(self) -> str:
        """`--input-shape` text for this model's static size."""
        return f"{self.input_name}={'x'.join(map(str, self.input_shape))}"


class _FirstTensor:
    """Wraps a module so its forward returns plain tensors (dict / ModelOutput → tensors)."""

    @staticmethod
    def wrap(module: Any, keys: tuple[str, ...]) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = module

            def forward(self, x):
                out = self.inner(x)
                picked = tuple(out[key] if isinstance(out, dict) else getattr(out, key) for key in keys)
                return picked[0] if len(picked) == 1 else picked

        return Wrapped().eval()


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def _smp(arch: str, encoder: str, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        import segmentation_models_pytorch as smp

        _seed()
        return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=5, **kwargs).eval()

    build.__name__ = f"smp_{arch}_{encoder}"
    return build


def hf_segformer() -> Any:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    _seed()
    config = SegformerConfig(num_labels=5)  # the b0 sizes (32/64/160/256)
    return _FirstTensor.wrap(SegformerForSemanticSegmentation(config).eval(), ("logits",))


def hf_dpt() -> Any:
    from transformers import DPTConfig, DPTForSemanticSegmentation

    _seed()
    config = DPTConfig(hidden_size=96, num_hidden_layers=4, num_attention_heads=3, intermediate_size=192,
                       image_size=96, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                       neck_hidden_sizes=[24, 48, 96, 192], fusion_hidden_size=64, num_labels=5,
                       use_auxiliary_head=False, attn_implementation="eager")
    return _FirstTensor.wrap(DPTForSemanticSegmentation(config).eval(), ("logits",))


def hf_upernet_convnext() -> Any:
    from transformers import (
        ConvNextConfig,
        UperNetConfig,
        UperNetForSemanticSegmentation,
    )

    _seed()
    backbone = ConvNextConfig(depths=[1, 1, 2, 1], hidden_sizes=[24, 48, 96, 192],
                              out_features=["stage1", "stage2", "stage3", "stage4"])
    config = UperNetConfig(backbone_config=backbone, hidden_size=64, auxiliary_in_channels=96,
                           use_auxiliary_head=False, num_labels=5)
    return _FirstTensor.wrap(UperNetForSemanticSegmentation(config).eval(), ("logits",))


def hf_maskformer() -> Any:
    from transformers import (
        MaskFormerConfig,
        MaskFormerForInstanceSegmentation,
        SwinConfig,
    )

    _seed()
    backbone = SwinConfig(embed_dim=24, depths=[1, 1, 2, 1], num_heads=[1, 2, 3, 6], window_size=4,
                          image_size=128, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = MaskFormerConfig(backbone_config=backbone, fpn_feature_size=64, mask_feature_size=64,
                              num_queries=20, num_labels=5, attn_implementation="eager")
    config.decoder_config.update({"d_model": 64, "encoder_layers": 1, "decoder_layers": 2,
                                  "decoder_attention_heads": 4, "encoder_attention_heads": 4,
                                  "decoder_ffn_dim": 128, "encoder_ffn_dim": 128})
    model = MaskFormerForInstanceSegmentation(config).eval()
    return _FirstTensor.wrap(model, ("class_queries_logits", "masks_queries_logits"))


def tv_lraspp() -> Any:
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    _seed()
    return _FirstTensor.wrap(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5), ("out",))


def tv_deeplabv3_mobilenetv3() -> Any:
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    _seed()
    module = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5, aux_loss=False)
    return _FirstTensor.wrap(module, ("out",))


SPECS: tuple[Spec, ...] = (
    Spec("smp_unet_resnet18", "smp", SMP_SHAPE, _smp("Unet", "resnet18")),
    Spec("smp_unet_resnet18_dynhw", "smp", SMP_SHAPE, _smp("Unet", "resnet18"), dynamic_hw=True),
    Spec("smp_unet_resnet18_dynamo_dynhw", "smp", SMP_SHAPE, _smp("Unet", "resnet18"), exporter="dynamo",
         dynamic_hw=True, slow=True),
    Spec("smp_unetplusplus_resnet18", "smp", SMP_SHAPE, _smp("UnetPlusPlus", "resnet18"), slow=True),
    Spec("smp_fpn_resnet18", "smp", SMP_SHAPE, _smp("FPN", "resnet18")),
    Spec("smp_deeplabv3_mobilenetv2", "smp", SMP_SHAPE, _smp("DeepLabV3", "mobilenet_v2")),
    Spec("smp_deeplabv3plus_mobilenetv2", "smp", SMP_SHAPE, _smp("DeepLabV3Plus", "mobilenet_v2")),
    Spec("smp_deeplabv3plus_efficientnetb0", "smp", SMP_SHAPE, _smp("DeepLabV3Plus", "efficientnet-b0")),
    Spec("smp_pspnet_resnet18", "smp", (1, 3, 96, 144), _smp("PSPNet", "resnet18")),
    Spec("smp_linknet_resnet18", "smp", SMP_SHAPE, _smp("Linknet", "resnet18")),
    Spec("smp_manet_resnet18", "smp", SMP_SHAPE, _smp("MAnet", "resnet18")),
    Spec("smp_pan_resnet18", "smp", SMP_SHAPE, _smp("PAN", "resnet18")),
    Spec("smp_upernet_resnet18", "smp", (1, 3, 192, 384), _smp("UPerNet", "resnet18", decoder_channels=64)),
    Spec("smp_segformer_mitb0", "smp", SMP_SHAPE, _smp("Segformer", "mit_b0")),
    Spec("hf_segformer_b0", "transformers", SMP_SHAPE, hf_segformer),
    Spec("hf_segformer_b0_dynhw", "transformers", SMP_SHAPE, hf_segformer, dynamic_hw=True),
    Spec("hf_dpt_tiny", "transformers", (1, 3, 128, 128), hf_dpt),
    Spec("hf_upernet_convnext_tiny", "transformers", (1, 3, 192, 192), hf_upernet_convnext),
    Spec("hf_maskformer_swin_tiny", "transformers", (1, 3, 128, 128), hf_maskformer),
    Spec("tv_lraspp_mobilenetv3", "torchvision", SMP_SHAPE, tv_lraspp),
    Spec("tv_lraspp_mobilenetv3_dynhw", "torchvision", SMP_SHAPE, tv_lraspp, dynamic_hw=True),
    Spec("tv_deeplabv3_mobilenetv3", "torchvision", SMP_SHAPE, tv_deeplabv3_mobilenetv3),
    Spec("tv_deeplabv3_mobilenetv3_dynamo", "torchvision", SMP_SHAPE, tv_deeplabv3_mobilenetv3,
         exporter="dynamo", slow=True),
    Spec("rapidocr_det_ppocrv4", "rapidocr", (1, 3, 320, 256), exporter="shipped", input_name="x",
         shipped="ch_PP-OCRv4_det_infer.onnx"),
    Spec("rapidocr_rec_ppocrv4", "rapidocr", (1, 3, 48, 320), exporter="shipped", input_name="x",
         shipped="ch_PP-OCRv4_rec_infer.onnx"),
    Spec("rapidocr_cls_mobilev2", "rapidocr", (1, 3, 48, 192), exporter="shipped", input_name="x",
         shipped="ch_ppocr_mobile_v2.0_cls_infer.onnx"),
)

BY_NAME = {spec.name: spec for spec in SPECS}


def shipped_path(spec: Spec) -> Path:
    """The rapidocr-onnxruntime package's copy of a shipped ONNX file."""
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).parent / "models" / spec.shipped
