"""A counting network packed for inference on a CPU, in float32 or bfloat16.

Eager PyTorch runs a batch-norm pass after every convolution and reorders each
convolution's weights into oneDNN's blocked layout on every call (under bfloat16 autocast it
also casts them, every call). :func:`pack_for_cpu` does all of it once: batch norm (eval
mode, running statistics) is folded into the convolution before it and each convolution's
weights are reordered once into the layout oneDNN chose for them.

- **float32**: the activations stay channels-last (NHWC) and every convolution runs with its
  ReLU, and the residual sum and ReLU that end each bottleneck, fused into it as oneDNN
  post-ops (``torch.ops.mkldnn._convolution_pointwise``, what PyTorch's own compiler emits
  for a CPU): no separate pass over the activations for them. It counts as the original
  does, to float32 rounding (≈1e-4 ions). On dev-2c-avx2 (AVX2) the network alone runs
  101–108 frames/s on one thread against 76 for the blocked layout with separate ReLU and
  sum passes it replaced (``benchmarks/bench_inference.py``).
- **bfloat16**: the convolutions take and give oneDNN's blocked tensors, cast once; it runs
  on the CPU's bfloat16 units (AVX512-BF16, AMX) and moves counts by a fraction of an ion
  (``benchmarks/bf16_accuracy.py``).
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


def _out_hw(layer: nn.Conv2d | nn.MaxPool2d, hw: tuple[int, int]) -> tuple[int, int]:
    """The output (rows, cols) of a convolution or max pool on an input of ``hw``."""
    k, s, p, d = (
        (layer.kernel_size, layer.stride, layer.padding, layer.dilation)
        if isinstance(layer, nn.Conv2d)
        else ((layer.kernel_size,) * 2, (layer.stride,) * 2, (layer.padding,) * 2, (1, 1))
    )
    rows, cols = ((hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in (0, 1))
    return rows, cols


#: The batch oneDNN is told to expect when it lays out a fused convolution's weights (any
#: batch runs; ``ccount count`` counts 32 frames a batch).
HINT_BATCH = 32


class _FusedConv2d(nn.Module):
    """A float32 convolution (batch norm folded in) on channels-last tensors, its weights
    laid out once by oneDNN for inputs ``(HINT_BATCH, C, *hw)``; ``relu``: ReLU fused in.
    Without the size hint oneDNN picks a layout that runs about 5 times slower."""

    def __init__(self, conv: nn.Conv2d, hw: tuple[int, int], relu: bool) -> None:
        super().__init__()
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.attr = "relu" if relu else "none"
        weight = conv.weight.detach().float().contiguous().to_mkldnn()
        size = [HINT_BATCH, conv.in_channels, *hw]
        self.register_buffer(
            "weight", torch._C._nn.mkldnn_reorder_conv2d_weight(weight, *self.args, size)
        )
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias.float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, *self.args, self.attr, [], ""
        )

    def add_relu(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """relu(conv(x) + other), one pass."""
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, self.weight, self.bias, *self.args, "add", 1.0, "relu", [], ""
        )


class _FusedBottleneck(nn.Module):
    """A ResNet bottleneck (batch norms folded) as three fused convolutions: 1 × 1 and
    3 × 3 with their ReLUs, then the last 1 × 1 with the shortcut's sum and the ReLU."""

    def __init__(self, block: nn.Module, hw: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = _FusedConv2d(block.conv1, hw, relu=True)
        self.conv2 = _FusedConv2d(block.conv2, hw, relu=True)
        self.out_hw = _out_hw(block.conv2, hw)
        self.conv3 = _FusedConv2d(block.conv3, self.out_hw, relu=False)
        self.downsample = (
            _FusedConv2d(block.downsample[0], hw, relu=False)
            if block.downsample is not None
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.conv3.add_relu(self.conv2(self.conv1(x)), shortcut)


def _fuse(resnet: nn.Module, hw: tuple[int, int]) -> tuple[_FusedConv2d, nn.Sequential]:
    """The stem convolution and the bottlenecks of a ResNet (batch norms folded) as fused
    float32 modules for inputs of ``hw`` (rows, cols)."""
    stem = _FusedConv2d(resnet.conv1, hw, relu=True)
    hw = _out_hw(resnet.maxpool, _out_hw(resnet.conv1, hw))
    blocks = []
    for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
        for block in layer:
            blocks.append(_FusedBottleneck(block, hw))
            hw = blocks[-1].out_hw
    return stem, nn.Sequential(*blocks)


def _pack_convolutions(module: nn.Module, dtype: torch.dtype) -> None:
    """In place: every ``nn.Conv2d`` below ``module`` becomes a :class:`_PackedConv2d`."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, _PackedConv2d(child, dtype))
        else:
            _pack_convolutions(child, dtype)


class PackedCpuNet(nn.Module):
    """``CountingNet``'s forward on a CPU, batch norm folded and weights prepacked.

    Input: prepared images ``(B, 1, H, W)`` float32, best of ``input_shape`` (H, W) (the
    weights are laid out for it; any size runs); output: ion numbers ``(B, n_outputs)``
    float32, like :meth:`CountingNet.forward`. The convolutions run in ``dtype`` (float32,
    fused and channels-last, or bfloat16, blocked); the input normalisation and the final
    linear layer in float32. Inference only (no gradients).
    """

    def __init__(
        self,
        net: CountingNet,
        dtype: torch.dtype = torch.float32,
        input_shape: tuple[int, int] = (96, 48),
    ) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype: float32 or bfloat16, got {dtype}")
        resnet = fold_batchnorm(copy.deepcopy(net.net).eval().float().cpu())
        self.dtype = dtype
        if dtype == torch.float32:
            self.stem, self.blocks = _fuse(resnet, (int(input_shape[0]), int(input_shape[1])))
            for name in ("conv1", "layer1", "layer2", "layer3", "layer4"):
                setattr(resnet, name, nn.Identity())  # kept only in the fused modules
        else:
            _pack_convolutions(resnet, dtype)
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
        h = (x - mean) / (std + 1e-6)
        if self.dtype == torch.float32:
            h = n.maxpool(self.stem(h.contiguous(memory_format=torch.channels_last)))
            h = n.avgpool(self.blocks(h))
        else:
            h = h.to(self.dtype).contiguous().to_mkldnn()
            h = n.maxpool(n.relu(n.conv1(h)))
            h = n.avgpool(n.layer4(n.layer3(n.layer2(n.layer1(h))))).to_dense().float()
        return n.fc(torch.flatten(h, 1)) * self.label_scale


def pack_for_cpu(
    net: CountingNet, bf16: bool = False, input_shape: tuple[int, int] = (96, 48)
) -> PackedCpuNet:
    """A packed copy of ``net`` (in eval mode) for CPU inference on prepared images of
    ``input_shape`` (rows, cols; the card's ``input_shape``), its convolutions in bfloat16
    when ``bf16`` else float32; ``net`` is untouched. Raises :class:`InputError` for
    bfloat16 on a CPU that cannot run it (:func:`bf16_packable`)."""
    if bf16:
        check_bf16_packable()
    dtype = torch.bfloat16 if bf16 else torch.float32
    return PackedCpuNet(net, dtype, input_shape).eval()
