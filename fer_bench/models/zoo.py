"""The built-in backbones. Adding one is one entry here; listing, the CLI and the tests read the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fer_bench.models.specs import IMAGENET_MEAN, IMAGENET_STD, _timm_builder, register_model

if TYPE_CHECKING:
    from torch import nn

INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the TensorFlow ports' normalisation
IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)

# name -> (timm architecture, family, input size of timm's default weights, declared params with a 7-class head,
#          paper, default recipe); sizes and mean/std are checked against timm's pretrained configs in the tests.
TIMM_ENTRIES: dict[str, tuple[str, str, int, int, str, str]] = {
    "efficientnetv2_s": ("tf_efficientnetv2_s", "efficientnet", 300, 20_186_455,
                         "InsideOut, Farabi et al., arXiv 2510.03066", "insideout-effnetv2s"),
    "efficientnet_b2": ("efficientnet_b2", "efficientnet", 256, 7_710_857,
                        "Naik et al., arXiv 2601.18228", "naik-effnetb2"),
    "resnet18": ("resnet18", "resnet", 224, 11_180_103, "He et al., arXiv 1512.03385", "baseline"),
    "resnet34": ("resnet34", "resnet", 224, 21_288_263, "He et al., arXiv 1512.03385", "baseline"),
    "resnet50": ("resnet50", "resnet", 224, 23_522_375, "He et al., arXiv 1512.03385", "baseline"),
    "vgg16_bn": ("vgg16_bn", "vgg", 224, 134_297_671, "Simonyan & Zisserman, arXiv 1409.1556", "baseline-vgg"),
    "vgg19_bn": ("vgg19_bn", "vgg", 224, 139_609_927, "Simonyan & Zisserman, arXiv 1409.1556", "baseline-vgg"),
}  # fmt: skip

for _name, (_arch, _family, _size, _params, _paper, _recipe) in TIMM_ENTRIES.items():
    _mean, _std = INCEPTION if _arch.startswith("tf_") else IMAGENET
    register_model(
        _name, source="timm", family=_family, input_size=_size, params=_params, paper=_paper,
        default_recipe=_recipe, timm_name=_arch, mean=_mean, std=_std,
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
    # NOTE: the paper's recipe (`--recipe khaireddin-vgg`) trains on ten crops per image, 10x the compute of an
    # epoch here; the plain protocol (baseline-vgg) keeps `fer-bench run --models vgg_khaireddin` affordable on a CPU.
    default_recipe="baseline-vgg",
)
def vgg_khaireddin(num_classes: int, in_chans: int, pretrained: bool, drop_rate: float | None = None) -> nn.Module:
    if pretrained:
        raise ValueError(
            "vgg_khaireddin has no published pretrained weights; pass --weights FILE or train from scratch"
        )
    from fer_bench.models.small import VggKhaireddin

    return VggKhaireddin(num_classes=num_classes, in_chans=in_chans, drop_rate=0.2 if drop_rate is None else drop_rate)


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
def simple_cnn(num_classes: int, in_chans: int, pretrained: bool, drop_rate: float | None = None) -> nn.Module:
    if pretrained:
        raise ValueError("simple_cnn has no pretrained weights; pass --weights FILE or train from scratch")
    from fer_bench.models.small import SimpleCnn

    return SimpleCnn(num_classes=num_classes, in_chans=in_chans, drop_rate=0.1 if drop_rate is None else drop_rate)
