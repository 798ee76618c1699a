"""PyTorch truth for the corpus: MACs counted while the module runs, independently of ONNX.

Two independent counters, run in the same forward pass:

* forward hooks on every `nn.Conv*d`, `nn.ConvTranspose*d` and `nn.Linear` (subclasses included,
  e.g. efficientnet's same-padding conv), with the closed-form counts of DESIGN.md:
  Conv `N·Cout·Hout·Wout·(Cin/g)·kh·kw`, ConvTranspose `N·Hin·Win·Cin·(Cout/g)·kh·kw`,
  Linear `rows·in·out`;
* a dispatch mode that applies `torch.utils.flop_counter`'s registered formulas (mm, addmm, bmm,
  baddbmm, convolution, attention kernels; flops = 2·MACs) to every aten call. Calls made inside a
  hooked module are that module's (their sum must equal the hooks' count: a cross-check);
  calls outside are the functional matmuls, einsums and attention of the model.

Scaled-dot-product attention runs on the math kernel so it decomposes into bmm like its ONNX export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Truth:
    """MACs of one forward pass at batch `input_shape[0]` (exact integers).

    Attributes:
        conv: nn.Conv*d and nn.ConvTranspose*d modules (forward hooks).
        linear: nn.Linear modules (forward hooks).
        functional: matmul/bmm/einsum/attention/F.conv calls outside those modules (flop counter / 2).
        inside_check: flop counter / 2 for calls inside hooked modules; equals conv + linear.
    """

    conv: int
    linear: int
    functional: int
    inside_check: int

    @property
    def macs(self) -> int:
        return self.conv + self.linear + self.functional


def _conv_macs(module: Any, x: Any, y: Any) -> int:
    import math

    import torch

    kernel = math.prod(module.kernel_size)
    if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
        return x.numel() * (module.out_channels // module.groups) * kernel
    return y.numel() * (module.in_channels // module.groups) * kernel


def count_truth(module: Any, input_shape: tuple[int, ...]) -> Truth:
    """Run `module` (eval, no grad) on a random input of `input_shape`; return its MACs."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    counts = {"conv": 0, "linear": 0, "inside": 0, "outside": 0}
    depth = [0]

    class Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                flops = formula(*args, **kwargs, out_val=out)
                assert flops % 2 == 0, (func, flops)
                counts["inside" if depth[0] else "outside"] += flops // 2
            return out

    def pre(_module, _inputs):
        depth[0] += 1

    def post(mod, inputs, output):
        depth[0] -= 1
        x = inputs[0]
        if isinstance(mod, torch.nn.Linear):
            counts["linear"] += (x.numel() // mod.in_features) * mod.in_features * mod.out_features
        else:
            counts["conv"] += _conv_macs(mod, x, output)

    hooked = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
    handles = []
    for sub in module.modules():
        if isinstance(sub, hooked):
            handles += [sub.register_forward_pre_hook(pre), sub.register_forward_hook(post)]
    example = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), Counter():
            module.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return Truth(conv=counts["conv"], linear=counts["linear"], functional=counts["outside"],
                 inside_check=counts["inside"])
