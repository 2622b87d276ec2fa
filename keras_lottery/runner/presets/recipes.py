"""The presets' recipes: the paper's hyperparameters, by name.

Each `Preset` holds the settings of a `PresetConfig` for one of Frankle &
Carbin's (ICLR 2019) networks, and where they come from (Figure 2 and
Appendices G-I); `PresetConfig.from_preset(name, **overrides)` builds one.
`keras-lottery presets` lists them.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named set of config values and where they come from."""

    values: dict[str, Any]
    source: str


def _conv_preset(model: str, lr: float, steps: int, conv_rate: float, convs: int,
                 dropout: float = 0.0) -> Preset:
    rates = {f"conv{i}": conv_rate for i in range(1, convs + 1)}
    variant = " with dropout 0.5 (Appendix H)" if dropout else ""
    return Preset(
        values=dict(
            model=model, dataset="cifar10", optimizer="adam", learning_rate=lr,
            batch_size=60, steps=steps, scope="layerwise", prune_fraction=0.2,
            rates={**rates, "output": 0.1}, dropout=dropout,
        ),
        source=(
            f"{model}{variant}: Adam {lr}, batch 60, {steps} iterations; prunes "
            f"conv layers {conv_rate:.0%}, fc 20%, output 10% per round, "
            "layer-wise (Frankle & Carbin 2019, Figure 2 and Appendix H)."
        ),
    )


_VGG19 = Preset(
    values=dict(
        model="vgg19", dataset="cifar10", optimizer="sgd", learning_rate=0.1,
        momentum=0.9, weight_decay=1e-4, batch_size=64, steps=112_000,
        lr_milestones=(56_000, 84_000), scope="global", prune_fraction=0.2,
        ignore=("output",), rewind_step=500, augment=True,
    ),
    source=(
        "VGG-19 on CIFAR-10: SGD 0.1, momentum 0.9, weight decay 1e-4, batch "
        "64, 112K iterations (160 epochs), rate /10 at epochs 80 and 120; "
        "flip + pad-crop augmentation; 20% global pruning of conv layers, "
        "output not pruned (Frankle & Carbin 2019, Figure 2, Appendix I). "
        "Rewinds to step 500 (late rewinding, Frankle et al. 2020) instead "
        "of warmup; see vgg19_warmup for the 2019 recipe."
    ),
)

_RESNET20 = Preset(
    values=dict(
        model="resnet20", dataset="cifar10", optimizer="sgd", learning_rate=0.1,
        momentum=0.9, weight_decay=1e-4, batch_size=128, steps=30_000,
        lr_milestones=(20_000, 25_000), scope="global", prune_fraction=0.2,
        ignore=("output", "stage2_block0_shortcut", "stage3_block0_shortcut"),
        rewind_step=500, augment=True,
    ),
    source=(
        "ResNet-20 (the paper's 'Resnet-18') on CIFAR-10: SGD 0.1, momentum "
        "0.9, weight decay 1e-4, batch 128, 30K iterations, rate /10 at 20K "
        "and 25K; flip + pad-crop; 20% global pruning of conv layers, output "
        "and 1x1 downsampling layers not pruned (Frankle & Carbin 2019, "
        "Figure 2, Appendix I). Rewinds to step 500 (Frankle et al. 2020) "
        "instead of warmup; see resnet20_warmup for the 2019 recipe."
    ),
)


def _warmup_variant(base: Preset, name: str, rate: float, warmup: int) -> Preset:
    """The paper's 2019 recipe for a deep network: warmup, rewind to θ0."""
    return Preset(
        values={**base.values, "learning_rate": rate, "warmup_steps": warmup,
                "rewind_step": 0},
        source=(
            f"{name} as in its base preset, but at rate {rate} with linear "
            f"learning-rate warmup over {warmup} iterations and rewinding to "
            "θ0: the paper's recipe for finding tickets at this rate (Frankle "
            "& Carbin 2019, Section 4, Appendix I)."
        ),
    )


PRESETS: dict[str, Preset] = {
    "lenet300": Preset(
        values=dict(
            model="lenet300", dataset="mnist", optimizer="adam", learning_rate=1.2e-3,
            batch_size=60, steps=50_000, scope="layerwise", prune_fraction=0.2,
            rates={"output": 0.1},
            # Not the paper's: LeNet-300-100's ops are too small to split between
            # threads (a quarter to a third less CPU time on one per op), while its
            # independent ops (layers' gradients, Adam's updates) run side by side
            # on two: 0.87x the wall time of one thread for both, the same files
            # bit for bit (docs/speed.md, "Sixth round" and "Tenth round").
            threads=1, inter_op_threads=2,
        ),
        source=(
            "LeNet-300-100 on MNIST: Adam 1.2e-3, batch 60, 50K iterations; "
            "prunes fc layers 20% and the output layer 10% per round, "
            "layer-wise (Frankle & Carbin 2019, Figure 2 and Appendix G). "
            "TensorFlow runs each op on one thread (threads=1), independent "
            "ops side by side on two (inter_op_threads=2): its small layers "
            "take less time so."
        ),
    ),
    "conv2": _conv_preset("conv2", 2e-4, 20_000, 0.1, 2),
    "conv4": _conv_preset("conv4", 3e-4, 25_000, 0.1, 4),
    "conv6": _conv_preset("conv6", 3e-4, 30_000, 0.15, 6),
    "conv2_dropout": _conv_preset("conv2", 3e-4, 60_000, 0.1, 2, dropout=0.5),
    "conv4_dropout": _conv_preset("conv4", 2e-4, 75_000, 0.1, 4, dropout=0.5),
    "conv6_dropout": _conv_preset("conv6", 2e-4, 90_000, 0.15, 6, dropout=0.5),
    "vgg19": _VGG19,
    "vgg19_warmup": _warmup_variant(_VGG19, "VGG-19", 0.1, 10_000),
    "resnet20": _RESNET20,
    "resnet20_warmup": _warmup_variant(_RESNET20, "ResNet-20", 0.03, 20_000),
}
