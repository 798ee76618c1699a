"""ERFNet (Romera et al., "ERFNet: Efficient Residual Factorized ConvNet for Real-Time
Semantic Segmentation", T-ITS 2018), as in the authors' PyTorch release (erfnet_pytorch).

Encoder: three downsampler blocks (a 3×3 stride-2 conv producing `out - in` channels,
concatenated with a 2×2 max-pool of the input, then BatchNorm + ReLU) around five
"non-bottleneck-1D" blocks at 64 channels and eight at 128 channels with dilations
2, 4, 8, 16 (twice). Decoder: two 3×3 stride-2 transposed convs (128→64, 64→16) each
followed by two non-bottleneck-1D blocks, and a final 2×2 stride-2 transposed conv to
the classes, which restores the input resolution. Every conv has a bias, as in the release.

The input height and width must be multiples of 8 (the conv and max-pool halves of each
downsampler must agree).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BATCHNORM_EPS = 1e-3
# (channels, dilation) of the encoder's 128-channel non-bottleneck-1D blocks.
ENCODER_DILATED_BLOCKS = ((128, 2), (128, 4), (128, 8), (128, 16)) * 2


class DownsamplerBlock(nn.Module):
    """Concatenates a 3×3 stride-2 conv (out - in channels) with a 2×2 max-pool, then BN + ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels (must exceed in_channels).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BATCHNORM_EPS)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class NonBottleneck1D(nn.Module):
    """Residual block of two factorized 3×3 convs (3×1 then 1×3), the second pair dilated.

    Args:
        channels: input and output channels.
        dilation: dilation of the second 3×1 / 1×3 pair.
        dropout: Dropout2d probability (training only).
    """

    def __init__(self, channels: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = nn.BatchNorm2d(channels, eps=BATCHNORM_EPS)
        self.conv3x1_2 = nn.Conv2d(channels, channels, (3, 1), padding=(dilation, 0), dilation=(dilation, 1),
                                   bias=True)
        self.conv1x3_2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                                   bias=True)
        self.bn2 = nn.BatchNorm2d(channels, eps=BATCHNORM_EPS)
        self.dropout = nn.Dropout2d(dropout)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.conv3x1_1(x))
        y = self.relu(self.bn1(self.conv1x3_1(y)))
        y = self.relu(self.conv3x1_2(y))
        y = self.dropout(self.bn2(self.conv1x3_2(y)))
        return self.relu(y + x)


class UpsamplerBlock(nn.Module):
    """3×3 stride-2 transposed conv doubling the resolution, then BN + ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1,
                                       bias=True)
        self.bn = nn.BatchNorm2d(out_channels, eps=BATCHNORM_EPS)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class ERFNet(nn.Module):
    """The full ERFNet encoder-decoder; logits at the input resolution.

    Args:
        num_classes: number of output classes.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        encoder: list[nn.Module] = [DownsamplerBlock(3, 16), DownsamplerBlock(16, 64)]
        encoder += [NonBottleneck1D(64, dilation=1, dropout=0.03) for _ in range(5)]
        encoder.append(DownsamplerBlock(64, 128))
        encoder += [NonBottleneck1D(channels, dilation, dropout=0.3) for channels, dilation in ENCODER_DILATED_BLOCKS]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(
            UpsamplerBlock(128, 64),
            NonBottleneck1D(64, dilation=1, dropout=0.0),
            NonBottleneck1D(64, dilation=1, dropout=0.0),
            UpsamplerBlock(64, 16),
            NonBottleneck1D(16, dilation=1, dropout=0.0),
            NonBottleneck1D(16, dilation=1, dropout=0.0),
            nn.ConvTranspose2d(16, num_classes, 2, stride=2, bias=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

