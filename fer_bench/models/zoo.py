"""The built-in backbones. Adding one is one entry here; listing, the CLI and the tests read the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fer_bench.models import _timm_builder, register_model

if TYPE_CHECKING:
    from torch import nn

# name -> (timm architecture, family, native input size, declared params with a 7-class head, paper, recipe)
TIMM_ENTRIES: dict[str, tuple[str, str, int, int, str, str]] = {
    "efficientnetv2_s": ("tf_efficientnetv2_s", "efficientnet", 384, 20_186_455,
                         "InsideOut, Farabi et al., arXiv 2510.03066", "insideout-effnetv2s"),
    "efficientnet_b2": ("efficientnet_b2", "efficientnet", 288, 7_710_857,
                        "Naik et al., arXiv 2601.18228", "naik-effnetb2"),
    "resnet18": ("resnet18", "resnet", 224, 11_180_103, "He et al., arXiv 1512.03385", "baseline"),
    "resnet34": ("resnet34", "resnet", 224, 21_288_263, "He et al., arXiv 1512.03385", "baseline"),
    "resnet50": ("resnet50", "resnet", 224, 23_522_375, "He et al., arXiv 1512.03385", "baseline"),
    "vgg16_bn": ("vgg16_bn", "vgg", 224, 134_297_671, "Simonyan & Zisserman, arXiv 1409.1556", "baseline"),
    "vgg19_bn": ("vgg19_bn", "vgg", 224, 139_609_927, "Simonyan & Zisserman, arXiv 1409.1556", "baseline"),
}  # fmt: skip

for _name, (_arch, _family, _size, _params, _paper, _recipe) in TIMM_ENTRIES.items():
    register_model(
        _name, source="timm", family=_family, input_size=_size, params=_params, paper=_paper,
        default_recipe=_recipe, timm_name=_arch,
    )(_timm_builder(_arch))  # fmt: skip


@register_model(
    "vgg_khaireddin",
    source="ours",
    family="vgg",
    input_size=40,  # the paper trains and tests on 40-px crops of the 48-px faces
    in_chans=1,
    mean=(0.0,),  # the paper feeds pixel / 255 without standardisation
    std=(1.0,),
    params=29_890_759,
    paper="Khaireddin & Chen, arXiv 2105.03588",
    default_recipe="khaireddin-vgg",
)
def vgg_khaireddin(num_classes: int, in_chans: int, pretrained: bool) -> nn.Module:
    if pretrained:
        raise ValueError("vgg_khaireddin has no published pretrained weights; pass --weights FILE or train from scratch")
    from fer_bench.models.small import VggKhaireddin

    return VggKhaireddin(num_classes=num_classes, in_chans=in_chans)


@register_model(
    "simple_cnn",
    source="ours",
    family="cnn",
    input_size=48,
    in_chans=1,
    mean=(0.5,),
    std=(0.25,),
    params=390_119,
    paper="none: a fast model for demos and tests",
)
def simple_cnn(num_classes: int, in_chans: int, pretrained: bool) -> nn.Module:
    if pretrained:
        raise ValueError("simple_cnn has no pretrained weights; pass --weights FILE or train from scratch")
    from fer_bench.models.small import SimpleCnn

    return SimpleCnn(num_classes=num_classes, in_chans=in_chans)
