"""A counting network packed for inference on a CPU, in float32 or bfloat16.

Eager PyTorch runs a batch-norm pass after every convolution and reorders each
convolution's weights into oneDNN's blocked layout on every call (under bfloat16 autocast it
also casts them, every call). :func:`pack_for_cpu` does all of it once: batch norm (eval
mode, running statistics) is folded into the convolution before it, each convolution's
weights are cast and reordered into oneDNN's layout, and the activations stay in that layout
from the first convolution to the pooling. In float32 the packed network counts as the
original does, to float32 rounding (≈1e-4 ions), and faster; in bfloat16 it runs on the
CPU's bfloat16 units (AVX512-BF16, AMX) and moves counts by a fraction of an ion
(``benchmarks/bench_inference.py``, "fp32 packed" and "bf16 packed";
``benchmarks/bf16_accuracy.py``).
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ccount_core.errors import InputError
from ccount_core.nn.model import CountingNet

__all__ = ["PackedCpuNet", "bf16_packable", "check_bf16_packable", "fold_batchnorm", "pack_for_cpu"]


@functools.cache
def bf16_packable() -> bool:
    """Whether oneDNN packs bfloat16 convolution weights on this CPU (it needs AVX512-BW/VL/DQ
    or AVX-NE-CONVERT; an AVX2-only CPU has neither), tried once on a 1 × 1 convolution."""
    weight = torch.zeros(1, 1, 1, 1, dtype=torch.bfloat16).to_mkldnn()
    try:
        torch._C._nn.mkldnn_reorder_conv2d_weight(weight, (0, 0), (1, 1), (1, 1), 1)
    except RuntimeError:
        return False
    return True


def check_bf16_packable() -> None:
    """Raise :class:`InputError` (one line) when bfloat16 networks cannot run on this CPU."""
    if not bf16_packable():
        raise InputError(
            "bf16: this CPU cannot pack bfloat16 networks (oneDNN needs "
            "AVX512-BW/VL/DQ or AVX-NE-CONVERT); leave out --bf16"
        )


def fold_batchnorm(resnet: nn.Module) -> nn.Module:
    """In place: fold each batch norm of a torchvision ResNet (Bottleneck blocks, eval mode)
    into the convolution before it; the batch norms become identities. Returns ``resnet``."""
    resnet.conv1 = fuse_conv_bn_eval(resnet.conv1, resnet.bn1)
    resnet.bn1 = nn.Identity()
    for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
        for block in layer:
            for i in (1, 2, 3):
                conv, bn = getattr(block, f"conv{i}"), getattr(block, f"bn{i}")
                setattr(block, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(block, f"bn{i}", nn.Identity())
            if block.downsample is not None:
                conv, bn = block.downsample
                block.downsample = nn.Sequential(fuse_conv_bn_eval(conv, bn))
    return resnet


class _PackedConv2d(nn.Module):
    """A convolution whose weights are cast to ``dtype`` and reordered once into oneDNN's
    layout; takes and gives oneDNN (``to_mkldnn``) tensors of that dtype."""

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype) -> None:
        super().__init__()
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        weight = conv.weight.detach().float().to(dtype).to_mkldnn()
        self.register_buffer(
            "weight",
            torch._C._nn.mkldnn_reorder_conv2d_weight(
                weight, self.padding, self.stride, self.dilation, self.groups
            ),
        )
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias.float().to(dtype).to_mkldnn())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mkldnn_convolution(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
        )


def _pack_convolutions(module: nn.Module, dtype: torch.dtype) -> None:
    """In place: every ``nn.Conv2d`` below ``module`` becomes a :class:`_PackedConv2d`."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, _PackedConv2d(child, dtype))
        else:
            _pack_convolutions(child, dtype)


class PackedCpuNet(nn.Module):
    """``CountingNet``'s forward on a CPU, batch norm folded and weights prepacked.

    Input: prepared images ``(B, 1, H, W)`` float32; output: ion numbers ``(B, n_outputs)``
    float32, like :meth:`CountingNet.forward`. The convolutions run in ``dtype`` (float32 or
    bfloat16); the input normalisation and the final linear layer in float32. Inference only
    (no gradients).
    """

    def __init__(self, net: CountingNet, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype: float32 or bfloat16, got {dtype}")
        resnet = fold_batchnorm(copy.deepcopy(net.net).eval().float().cpu())
        _pack_convolutions(resnet, dtype)
        self.dtype = dtype
        self.net = resnet
        self.register_buffer("label_scale", net.label_scale.detach().float().cpu().clone())

    @property
    def n_outputs(self) -> int:
        return int(self.label_scale.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ion numbers ``(B, n_outputs)`` for prepared images ``(B, 1, H, W)`` (float32, CPU)."""
        x = x.float()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        n = self.net
        h = ((x - mean) / (std + 1e-6)).to(self.dtype).contiguous().to_mkldnn()
        h = n.maxpool(n.relu(n.conv1(h)))
        h = n.avgpool(n.layer4(n.layer3(n.layer2(n.layer1(h))))).to_dense().float()
        return n.fc(torch.flatten(h, 1)) * self.label_scale


def pack_for_cpu(net: CountingNet, bf16: bool = False) -> PackedCpuNet:
    """A packed copy of ``net`` (in eval mode) for CPU inference, its convolutions in bfloat16
    when ``bf16`` else float32; ``net`` is untouched. Raises :class:`InputError` for
    bfloat16 on a CPU that cannot run it (:func:`bf16_packable`)."""
    if bf16:
        check_bf16_packable()
    return PackedCpuNet(net, torch.bfloat16 if bf16 else torch.float32).eval()
