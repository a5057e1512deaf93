"""The counting network: ResNet50 with a greyscale input and a regression head.

A model on disk is two files side by side: ``NAME.safetensors`` (the weights, float32 or
float16, never pickle) and ``NAME.json`` (the model card: architecture, outputs, label scale,
the preprocessing configuration, input shape, data and training summary, metrics).
``save_model`` / ``load_model`` read and write the pair; a directory stands for
``DIR/model.safetensors`` + ``DIR/model.json``.

Inputs are prepared images ``(batch, 1, H, W)`` float32 (trap axis vertical, see
``ccount_core.image.preprocess``). The network standardises each image (zero mean, unit standard
deviation) so it does not depend on the camera's brightness scale, and predicts counts divided
by ``label_scale`` (ions); ``forward`` returns ion numbers ``(batch, n_outputs)``.

The ResNet50 is defined here, layer for layer and name for name as torchvision's
``resnet50`` (He et al. 2016, v1.5: the stride in the 3 x 3 convolution), so its state dict,
ImageNet weights and the shipped models load unchanged; torchvision itself is not imported,
which would cost a counting process seconds (and a GUI a frozen window) for nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ccount_core.errors import InputError
from ccount_core.files import atomic_write_bytes, remove_stale_temps
from ccount_core.nn._triton import hide_triton_without_gpu

ARCHITECTURE = "resnet50-greyscale-regression"
CARD_FORMAT = "ccount-model"
CARD_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
_REQUIRED_CARD_KEYS = (
    "format",
    "architecture",
    "n_outputs",
    "label_names",
    "label_scale",
    "preprocess",
    "input_shape",
)


class Bottleneck(nn.Module):
    """ResNet's bottleneck block (torchvision's ``Bottleneck``, names and order kept): 1 x 1,
    3 x 3 (``stride``), 1 x 1 convolutions to ``4 * planes`` channels, each with batch norm,
    plus the input (through ``downsample`` when its shape differs)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class ResNet50(nn.Module):
    """ResNet50's layers with an ``in_channels`` input and a linear ``fc`` of ``n_outputs``
    (torchvision's ``resnet50`` names and initialisation: He-normal convolutions, batch norms
    at 1 and 0)."""

    def __init__(self, in_channels: int, n_outputs: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, blocks, stride) in enumerate(
            ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1
        ):
            layer = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            layer += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, n_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features ``(B, 2048)`` of images ``(B, in_channels, H, W)``."""
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.avgpool(self.layer4(self.layer3(self.layer2(self.layer1(h)))))
        return torch.flatten(h, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class CountingNet(nn.Module):
    """ResNet50 (random init) with a 1-channel ``conv1`` and a linear head of ``n_outputs``.

    ``label_scale`` (ions, one per output) is a buffer: the head predicts ``count / scale``,
    which keeps the regression target of order one.
    """

    def __init__(self, n_outputs: int = 1, label_scale: Sequence[float] | None = None) -> None:
        super().__init__()
        hide_triton_without_gpu()
        if n_outputs < 1:
            raise InputError(f"n_outputs: must be at least 1, got {n_outputs}")
        scale = [100.0] * n_outputs if label_scale is None else [float(s) for s in label_scale]
        if len(scale) != n_outputs or min(scale) <= 0:
            raise InputError(f"label_scale: need {n_outputs} positive values, got {scale}")
        self.net = ResNet50(1, n_outputs)
        self.register_buffer("label_scale", torch.tensor(scale, dtype=torch.float32))

    @property
    def n_outputs(self) -> int:
        return int(self.label_scale.numel())

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        """Head output in units of ``label_scale``: ``(B, 1, H, W)`` -> ``(B, n_outputs)``."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise InputError(f"model input: expected (batch, 1, H, W), got {tuple(x.shape)}")
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        h = self.net.features((x - mean) / (std + 1e-6))
        # The head stays float32 under autocast: bfloat16 would round ~300 ions to ±1 ion.
        with torch.autocast(device_type=h.device.type, enabled=False):
            return self.net.fc(h.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ion numbers ``(B, n_outputs)`` float32 for prepared images ``(B, 1, H, W)``."""
        return self.scaled(x).float() * self.label_scale


def build_model(
    n_outputs: int = 1,
    init_weights: Path | str | None = None,
    label_scale: Sequence[float] | None = None,
) -> CountingNet:
    """A new counting network, randomly initialised or started from ImageNet weights.

    ``init_weights``: a torchvision ResNet50 ImageNet state dict the user already has
    (``.pth`` read with ``torch.load(weights_only=True)``, or ``.safetensors``). The RGB
    kernels of ``conv1`` are summed into the greyscale kernel; the classifier is not used.
    """
    model = CountingNet(n_outputs, label_scale)
    if init_weights is not None:
        state = _read_state_dict(Path(init_weights), "init_weights")
        conv = state.get("conv1.weight")
        if conv is None or tuple(conv.shape) != (64, 3, 7, 7):
            raise InputError(
                f"init_weights: {init_weights} is not a torchvision ResNet50 "
                "state dict (no conv1.weight of shape (64, 3, 7, 7))"
            )
        backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
        backbone["conv1.weight"] = conv.float().sum(dim=1, keepdim=True)
        own = model.net.state_dict()
        bad = [k for k, v in backbone.items() if k not in own or own[k].shape != v.shape]
        if bad:
            raise InputError(
                f"init_weights: {init_weights} does not match ResNet50 (e.g. {bad[0]})"
            )
        missing = [k for k in own if k not in backbone and not k.startswith("fc.")]
        if missing:
            raise InputError(f"init_weights: {init_weights} lacks {missing[0]}")
        model.net.load_state_dict({k: v.float() for k, v in backbone.items()}, strict=False)
    return model


def _read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a tensors-only torch file (no pickle execution)."""
    if not path.is_file():
        raise InputError(f"{what}: no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise InputError(f"{what}: {path} is not a safetensors file ({exc})") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{what}: {path} is not a tensors-only torch file ({exc})") from exc
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise InputError(f"{what}: {path} does not hold a state dict")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def model_paths(path: Path | str) -> tuple[Path, Path]:
    """``(weights, card)`` paths for a model given as a directory, ``.safetensors`` or ``.json``."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        return path.with_suffix(".safetensors"), path.with_suffix(".json")
    return path / WEIGHTS_NAME, path / WEIGHTS_NAME.replace(".safetensors", ".json")


def default_model_path() -> Path:
    """The model shipped inside the package (``ccount_core/models/default.safetensors``)."""
    return Path(__file__).parents[1] / "models" / "default.safetensors"


def save_model(
    path: Path | str, model: CountingNet, card: Mapping[str, Any], half: bool = False
) -> tuple[Path, Path]:
    """Write the weights (safetensors, float16 when ``half``) and the JSON card atomically.

    ``card`` must hold at least ``label_names``, ``preprocess`` (a PreprocessConfig dict) and
    ``input_shape`` ``[H, W]`` (pixels); architecture, outputs and label scale are filled in.
    Temporary files a killed save left are removed first. Returns ``(weights_path, card_path)``.
    """
    from safetensors.torch import save

    weights_path, card_path = model_paths(path)
    full = dict(card)
    full.update(
        format=CARD_FORMAT,
        format_version=CARD_VERSION,
        architecture=ARCHITECTURE,
        n_outputs=model.n_outputs,
        label_scale=[float(s) for s in model.label_scale.tolist()],
        weights_file=weights_path.name,
        weights_dtype="float16" if half else "float32",
    )
    missing = [k for k in _REQUIRED_CARD_KEYS if k not in full]
    if missing:
        raise InputError(f"card: missing {', '.join(missing)}")
    if len(full["label_names"]) != model.n_outputs:
        raise InputError(
            f"card: {len(full['label_names'])} label_names for {model.n_outputs} outputs"
        )
    dtype = torch.float16 if half else torch.float32
    tensors = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    # label_scale stays float32: the exact ion scale should not be rounded.
    tensors["label_scale"] = model.label_scale.detach().cpu().float().contiguous()
    for target in (weights_path, card_path):
        remove_stale_temps(target)
    atomic_write_bytes(weights_path, save(tensors, metadata={"format": CARD_FORMAT}))
    atomic_write_bytes(card_path, (json.dumps(full, indent=2, sort_keys=True) + "\n").encode())
    return weights_path, card_path


def read_card(path: Path | str) -> dict[str, Any]:
    """The model card of a model path (directory, ``.safetensors`` or ``.json``)."""
    weights_path, card_path = model_paths(path)
    if not Path(path).exists():
        raise InputError(f"model: no such file or directory: {path}")
    if not card_path.is_file():
        raise InputError(
            f"model: card {card_path} is missing (a model is "
            f"{weights_path.name} + {card_path.name})"
        )
    try:
        card = json.loads(card_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"model: card {card_path} is not JSON ({exc})") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise InputError(f"model: {card_path} is not a ccount model card")
    missing = [k for k in _REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise InputError(f"model: card {card_path} lacks {', '.join(missing)}")
    if card["architecture"] != ARCHITECTURE:
        raise InputError(f"model: unknown architecture {card['architecture']!r} in {card_path}")
    names = card["label_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InputError(f"model: card {card_path}: label_names must be a list of species names")
    return card


def check_config(card: Mapping[str, Any], expected_config: Any, where: str = "model") -> None:
    """Raise InputError when the card's preprocessing differs from ``expected_config``.

    ``expected_config``: a ``PreprocessConfig`` or its dict.
    """
    expected = expected_config.to_dict() if hasattr(expected_config, "to_dict") else expected_config
    expected = json.loads(json.dumps(dict(expected)))
    actual = card["preprocess"]
    if actual != expected:
        keys = sorted(set(actual) | set(expected))
        diff = [k for k in keys if actual.get(k) != expected.get(k)]
        shown = ", ".join(f"{k}={actual.get(k)!r} (asked {expected.get(k)!r})" for k in diff[:3])
        raise InputError(f"{where}: preprocessing configuration differs: {shown}")


def load_model(
    path: Path | str | None = None, expected_config: Any = None
) -> tuple[CountingNet, dict[str, Any]]:
    """``(model in eval mode, float32 on CPU; card)`` from safetensors + JSON, never pickle.

    ``path`` None loads the default model. ``expected_config`` (PreprocessConfig or dict):
    refuse a model prepared differently.
    """
    from safetensors.torch import load_file

    path = default_model_path() if path is None else Path(path)
    card = read_card(path)
    if expected_config is not None:
        check_config(card, expected_config)
    weights_path, _ = model_paths(path)
    if not weights_path.is_file():
        raise InputError(f"model: weights {weights_path} are missing")
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:
        raise InputError(f"model: {weights_path} is not a safetensors file ({exc})") from exc
    model = CountingNet(int(card["n_outputs"]), card["label_scale"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise InputError(f"model: {weights_path} does not match {ARCHITECTURE} (key {bad})")
    model.eval()
    return model, card
