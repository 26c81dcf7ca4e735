"""The lung-nodule CNN: four 3-D convolution blocks and a linear class map whose maximum is
the logit; its forward returns the nodule probability and its class activation map.

``[N, 1, 64, 128, 128]`` -> block 1 (conv 3^3, stride 2, 8 channels) -> block 2 (stride
2, 16) -> block 3 (32) -> block 4 (64 channels, the maps ``A_k`` at ``[16, 32, 32]``),
each a convolution, batch normalisation and ReLU. The class map is ``M = sum_k w_k A_k``
per cell and the head is ``logit = b + max over cells of M``: a nodule fills a few of the
16,384 cells, so an average over all of them (the global-average-pool head of Zhou et al.
2016) drowns it, where the maximum is the nodule's own cell (multiple-instance pooling).
The class activation map ``CAM = ReLU(M)`` needs no gradient; each map is scaled to
[0, 1] by its own maximum (zeros when that is 0). ``probability = sigmoid(logit)``. Both
are outputs of the exported ONNX graph.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CHANNELS", "NoduleCNN", "cam_shape"]

CHANNELS = (8, 16, 32, 64)
STRIDES = (2, 2, 1, 1)
POOL_GAIN = 16.0
"""A fixed reparametrisation of the linear weights: the effective ``w_k`` is
``POOL_GAIN * head.weight`` (what the class map is made of), a larger step for the head's
weights at the optimiser's learning rate; the CAM, scaled by its own maximum, does not
depend on it."""


def cam_shape(input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The class activation map's ``(d, h, w)`` for an input ``(D, H, W)``."""
    out = list(input_shape)
    for s in STRIDES:
        out = [(n + 2 - 3) // s + 1 for n in out]
    return (out[0], out[1], out[2])


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


class NoduleCNN(nn.Module):
    def __init__(self, channels: tuple[int, ...] = CHANNELS) -> None:
        super().__init__()
        ins = (1, *channels[:-1])
        self.features = nn.Sequential(
            *(_block(a, b, s) for a, b, s in zip(ins, channels, STRIDES, strict=True))
        )
        self.head = nn.Linear(channels[-1], 1)

    def logits_and_maps(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logit ``[N]`` and the last block's maps ``[N, K, d, h, w]``."""
        maps = self.features(volume)
        logit = self.class_map(maps).amax(dim=(1, 2, 3)) + self.head.bias[0]
        return logit, maps

    def class_map(self, maps: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k A_k`` per cell ``[N, d, h, w]`` (before the ReLU and scaling)."""
        return torch.einsum("k,nkdhw->ndhw", POOL_GAIN * self.head.weight[0], maps)

    def forward(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probability [N], cam [N, d, h, w])`` per the model contract."""
        logit, maps = self.logits_and_maps(volume)
        cam = torch.relu(self.class_map(maps))
        peak = cam.amax(dim=(1, 2, 3), keepdim=True)
        cam = torch.where(peak > 0, cam / torch.clamp(peak, min=1e-12), torch.zeros_like(cam))
        return torch.sigmoid(logit), cam
