"""Our own small networks: the 48-px VGG of Khaireddin & Chen (arXiv 2105.03588) and a tiny CNN."""

from __future__ import annotations

import torch
from torch import nn


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers += [nn.Conv2d(c, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class VggKhaireddin(nn.Module):
    """Four stages of [conv3×3 → BN → ReLU] × 2 → max-pool (64/128/256/512), then FC 4096 → 4096 → classes.

    The paper feeds 40-px crops, which leave a 2×2×512 map. ``AdaptiveAvgPool2d(2)`` is the identity
    there and lets other input sizes (48 px, say) through without changing the parameter count.
    """

    def __init__(self, num_classes: int = 7, in_chans: int = 1, drop_rate: float = 0.2) -> None:
        super().__init__()
        widths = (in_chans, 64, 128, 256, 512)
        self.features = nn.Sequential(*(_stage(a, b) for a, b in zip(widths, widths[1:], strict=False)))
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.pre_logits = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512 * 2 * 2, 4096), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
        )  # fmt: skip
        self.head = nn.Linear(4096, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pre_logits(self.pool(self.features(x))))

    def get_classifier(self) -> nn.Module:
        return self.head


class SimpleCnn(nn.Module):
    """A small plain CNN (four conv-BN-ReLU-pool stages, global average pool, linear head).

    Not from a paper: it is the fast model for the demo, the tests and smoke runs of the pipeline.
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        drop_rate: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_chans, *widths), widths, strict=False):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]  # fmt: skip
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop_rate))
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))

    def get_classifier(self) -> nn.Module:
        return self.head
