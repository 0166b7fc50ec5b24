"""The official LightCNN-29 architectures in PyTorch, written from the published layer list.

Used only by the conversion tests (torch is an optional extra); the module names reproduce the
release `state_dict` names (`block1.0.conv1.filter.weight`, `group1.conv_a.filter.bias`, ...).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class MFM(nn.Module):
    """`filter` (Conv2d or Linear) to 2*out channels, then the max of torch.split's two halves."""

    def __init__(self, cin, cout, kernel=3, stride=1, padding=1, linear=False):
        super().__init__()
        self.out = cout
        if linear:
            self.filter = nn.Linear(cin, 2 * cout)
        else:
            self.filter = nn.Conv2d(cin, 2 * cout, kernel, stride, padding)

    def forward(self, x):
        a, b = torch.split(self.filter(x), self.out, dim=1)
        return torch.max(a, b)


class ResBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = MFM(channels, channels, 3, 1, 1)
        self.conv2 = MFM(channels, channels, 3, 1, 1)

    def forward(self, x):
        return self.conv2(self.conv1(x)) + x


class Group(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv_a = MFM(cin, cin, 1, 1, 0)
        self.conv = MFM(cin, cout, 3, 1, 1)

    def forward(self, x):
        return self.conv(self.conv_a(x))


class LightCNN29(nn.Module):
    """v2 (`network_29layers_v2`) or v1 (`network_29layers`); `grid` = input size / 16."""

    def __init__(self, version=2, num_classes=10, grid=8):
        super().__init__()
        self.version = version
        self.conv1 = MFM(1, 48, 5, 1, 2)
        self.block1 = nn.Sequential(*[ResBlock(48) for _ in range(1)])
        self.group1 = Group(48, 96)
        self.block2 = nn.Sequential(*[ResBlock(96) for _ in range(2)])
        self.group2 = Group(96, 192)
        self.block3 = nn.Sequential(*[ResBlock(192) for _ in range(3)])
        self.group3 = Group(192, 128)
        self.block4 = nn.Sequential(*[ResBlock(128) for _ in range(4)])
        self.group4 = Group(128, 128)
        if version == 2:
            self.fc = nn.Linear(grid * grid * 128, 256)
            self.fc2 = nn.Linear(256, num_classes, bias=False)
        else:
            self.fc = MFM(grid * grid * 128, 256, linear=True)
            self.fc2 = nn.Linear(256, num_classes)

    def pool(self, x):
        if self.version == 2:
            return functional.max_pool2d(x, 2) + functional.avg_pool2d(x, 2)
        return functional.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)

    def forward(self, x):
        x = self.pool(self.conv1(x))
        x = self.pool(self.group1(self.block1(x)))
        x = self.pool(self.group2(self.block2(x)))
        x = self.group3(self.block3(x))
        x = self.pool(self.group4(self.block4(x)))
        fc = self.fc(torch.flatten(x, 1))  # NCHW flatten
        out = self.fc2(functional.dropout(fc, training=self.training))
        return out, fc


def save_release_checkpoint(model: nn.Module, path: str) -> None:
    """The release file format: a dict with `state_dict` under DataParallel's `module.` names."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "arch": "LightCNN-29", "state_dict": state}, path)
