"""`runner/presets/config.py` and `recipes.py`: the presets' settings."""

import pytest

import keras_lottery as kl
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.presets import PresetConfig


def test_presets_carry_the_papers_hyperparameters():
    lenet = kl.PresetConfig.from_preset("lenet300")
    assert (lenet.learning_rate, lenet.batch_size, lenet.steps) == (1.2e-3, 60, 50_000)
    assert lenet.rates == {"output": 0.1} and lenet.prune_fraction == 0.2
    conv6 = kl.PresetConfig.from_preset("conv6")
    assert conv6.rates["conv6"] == 0.15 and conv6.learning_rate == 3e-4 and conv6.steps == 30_000
    resnet = kl.PresetConfig.from_preset("resnet20")
    assert resnet.scope == "global" and resnet.rewind_step == 500 and "output" in resnet.ignore
    assert kl.PresetConfig.from_preset("resnet20_warmup").warmup_steps == 20_000
    assert kl.PresetConfig.from_preset("vgg19_warmup").warmup_steps == 10_000
    assert kl.PresetConfig.from_preset("conv2_dropout").dropout == 0.5
    for name, preset in kl.PRESETS.items():
        assert "Frankle" in preset.source, name
        kl.PresetConfig.from_preset(name)  # every preset validates


def test_the_recipe_is_what_a_preset_adds_to_the_generic_settings():
    recipe = PresetConfig.recipe_settings()
    assert {"dataset", "optimizer", "learning_rate", "lr_milestones", "dropout", "augment",
            "validation", "classes", "data_dir"} <= set(recipe)
    assert not set(recipe) & {"mode", "rounds", "scope", "rewind_step", "steps", "seed"}
    assert all(not hasattr(LotteryConfig(model="a:b", data="c:d"), name) for name in recipe)


def test_a_preset_trains_on_its_dataset_not_on_data():
    with pytest.raises(ValueError, match=r"model must be one of \[.*'lenet300'.*Received: "
                                         r"model='lenet5'"):
        PresetConfig(model="lenet5")
    with pytest.raises(ValueError, match=r"data goes with a model of your own"):
        PresetConfig(model="lenet300", data="mypkg.data:load")
    with pytest.raises(ValueError, match=r"dataset must be one of \['mnist', 'fashion_mnist', "
                                         r"'cifar10'\]. Received: dataset='imagenet'"):
        PresetConfig(dataset="imagenet")


def test_unit_pruning_of_the_output_layer_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match=r"Give it rate 0"):
        PresetConfig.from_preset("lenet300", granularity="unit", rates={})
    PresetConfig.from_preset("lenet300", granularity="unit", rates={"output": 0})


def test_the_presets_model_is_rebuilt_bit_for_bit():
    config = PresetConfig.from_preset("lenet300", seed=3)
    first, second = (config.masked_model((28, 28, 1), 10) for _ in range(2))
    for a, b in zip(first.get_weights(), second.get_weights()):
        assert (a == b).all()
    other = PresetConfig.from_preset("lenet300", seed=4).masked_model((28, 28, 1), 10)
    assert any((a != b).any() for a, b in zip(first.get_weights(), other.get_weights()))
