"""Count MACs directly in PyTorch with forward hooks — the independent check of the analyzer.

Counts Conv{1,2,3}d, ConvTranspose{1,2,3}d and Linear by the DESIGN conventions (batch
included, bias not a MAC). A module called twice is counted twice.
"""

from __future__ import annotations

from math import prod
from typing import Any


def hook_macs(model: Any, input_shape: tuple[int, ...]) -> int:
    """Exact MACs of one forward pass of `model` on zeros of `input_shape`."""
    import torch
    from torch import nn

    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        # output elements × (C_in / groups) × prod(kernel)
        total += output.numel() * (module.in_channels // module.groups) * prod(module.kernel_size)

    def conv_transpose_hook(module, inputs, output):
        nonlocal total
        # input elements × (C_out / groups) × prod(kernel)
        total += inputs[0].numel() * (module.out_channels // module.groups) * prod(module.kernel_size)

    def linear_hook(module, inputs, output):
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            handles.append(module.register_forward_hook(conv_transpose_hook))
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(*input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return total
