"""A backbone's inference form: each batch norm folded into the convolution before it.

In eval mode a batch norm is an affine map per channel, so ``bn(conv(x))`` equals one convolution
with scaled weights and a bias: one pass over the feature map instead of two. The folded weights
are computed in float64 and rounded once, so a folded network's features differ from the
unfolded one's by float32 rounding only (about 1e-6 relative, checked by tests/test_backbones.py),
and fitting and inspecting both use the folded form, so a model's bank and its queries always come
from the same numbers. TensorFlow-style "same" padding that pads both sides equally (every stride-1
convolution) moves into the convolution's own padding, which saves a copy of the map. Weights are
stored channels-last (:func:`to_channels_last`), the layout in which oneDNN runs depthwise and 1x1
convolutions fastest on the CPUs measured.
"""

from __future__ import annotations

import torch
from torch import nn


def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``conv`` (the same class and padding) whose output equals ``bn(conv(x))`` in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a batch norm without running statistics cannot be folded")
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = torch.zeros(conv.out_channels, dtype=torch.float64) if conv.bias is None else conv.bias.detach().double()
    weight = conv.weight.detach().double() * scale.reshape(-1, 1, 1, 1)
    bias = (bias - bn.running_mean.double()) * scale + bn.bias.detach().double()
    conv.weight = nn.Parameter(weight.float(), requires_grad=False)
    conv.bias = nn.Parameter(bias.float(), requires_grad=False)
    return conv


def fold_pairs(parent: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Fold each named ``(conv, batch norm)`` child pair of ``parent``; the batch norm becomes an identity."""
    for conv_name, bn_name in pairs:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"{type(parent).__name__}.{conv_name}/{bn_name} is not a convolution and a batch norm")
        setattr(parent, conv_name, folded_conv(conv, bn))
        setattr(parent, bn_name, nn.Identity())


def fold_sequential(sequence: nn.Sequential) -> nn.Sequential:
    """A ``Sequential`` with every convolution directly followed by a batch norm folded."""
    modules = list(sequence)
    out: list[nn.Module] = []
    index = 0
    while index < len(modules):
        module = modules[index]
        following = modules[index + 1] if index + 1 < len(modules) else None
        if isinstance(module, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
            out.append(folded_conv(module, following))
            index += 2
        else:
            out.append(module)
            index += 1
    return nn.Sequential(*out)


def symmetric_padding_inside(conv: nn.Module) -> None:
    """Move a static "same" padding that pads opposite sides equally into the convolution's own padding.

    EfficientNet's convolutions pad with a separate ``ZeroPad2d`` (``static_padding``) before
    convolving, because TensorFlow's "same" padding can be uneven; where it is even, the
    convolution pads the same zeros without building a padded copy.
    """
    pad = getattr(conv, "static_padding", None)
    if not isinstance(pad, nn.ZeroPad2d) or not isinstance(conv, nn.Conv2d):
        return
    left, right, top, bottom = pad.padding
    if left == right and top == bottom and conv.padding == (0, 0):
        conv.padding = (top, left)
        conv.static_padding = nn.Identity()


def to_channels_last(module: nn.Module) -> None:
    """Store every 4-d weight channels-last, the layout the extractors feed their convolutions."""
    for parameter in module.parameters():
        if parameter.dim() == 4:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
