"""`runner/config.py`: the generic settings of a run, its hash, its kinds."""

import ast
import json
import pathlib

import pytest

import keras_lottery as kl
from keras_lottery.runner.config import LotteryConfig, monitor_is_maximized
from keras_lottery.runner.presets import PresetConfig

OWN = dict(model="mypkg.nets:build", data="mypkg.data:load")


def test_config_validation_names_field_value_and_accepted():
    with pytest.raises(ValueError, match=r"mode must be one of \['iterative', 'oneshot', 'gradual'\]. Received: mode='both'"):
        kl.PresetConfig(mode="both")
    with pytest.raises(ValueError, match=r"needs sparsities"):
        kl.PresetConfig(mode="oneshot")
    with pytest.raises(ValueError, match=r"sparsities are percents of weights remaining, in \(0, 100\). Received: sparsities=\[150.0\]"):
        kl.PresetConfig(mode="oneshot", sparsities=(150,))
    with pytest.raises(ValueError, match=r"rewind_step must be smaller than steps"):
        kl.PresetConfig(steps=100, rewind_step=100)
    with pytest.raises(ValueError, match=r"Unknown preset 'lenet5'. Accepted: \["):
        kl.PresetConfig.from_preset("lenet5")
    with pytest.raises(ValueError, match=r"Unknown config fields \['epochs'\]"):
        kl.LotteryConfig.from_dict({"epochs": 3})


def test_config_accepts_auto_and_refuses_bad_candidates():
    assert PresetConfig.from_preset("lenet300", steps=2000).run_hash() == PresetConfig.from_preset(
        "lenet300", steps=2000, rewind_candidates=(0, 100, 250, 500, 1000, 2000)).run_hash()
    with pytest.raises(ValueError, match="Received: rewind_candidates=\\[0, 3000\\], steps=2000"):
        PresetConfig.from_preset("lenet300", steps=2000, rewind_step="auto",
                                  rewind_candidates=(0, 3000))
    with pytest.raises(ValueError, match="Received: rewind_step='late'"):
        PresetConfig.from_preset("lenet300", rewind_step="late")
    with pytest.raises(ValueError, match="Received: stability_threshold=-1"):
        PresetConfig.from_preset("lenet300", stability_threshold=-1)


def test_run_hashes_are_those_earlier_versions_gave():
    # Run directories are named by these hashes, so that a run resumes where
    # it stopped; each value was computed by keras-lottery 0.3 (commit
    # 128a251), before the settings were split into LotteryConfig and
    # PresetConfig. A change of the hash would orphan every existing run.
    preset = PresetConfig.from_preset("lenet300", dataset="fashion_mnist", steps=2000, rounds=3)
    assert preset.run_name == "lenet300_fashion_mnist_iterative_d91f1bf1"  # the README's run
    oneshot = PresetConfig.from_preset("conv2", dataset="fashion_mnist", steps=2000,
                                       mode="oneshot", sparsities=(50, 20), pruner="snip")
    assert oneshot.run_name == "conv2_fashion_mnist_oneshot_fa2f49e8"
    own = LotteryConfig(**OWN, rounds=2, steps=300, controls=("random_reinit",),
                        prune_fraction=0.3, architecture="abc123", scope="layerwise")
    assert own.run_name == "build_load_iterative_c59bbbae"


def test_settings_outside_the_identity_leave_the_hash_alone():
    base = LotteryConfig(**OWN, steps=300)
    for name, value in [("rounds", 9), ("controls", ("random_prune",)), ("verbose", 0),
                        ("logdir", "elsewhere"), ("on_divergence", "stop"),
                        ("test_curves", True), ("checkpoint_every", 7), ("strategy", "mirrored")]:
        assert LotteryConfig(**OWN, steps=300, **{name: value}).run_hash() == base.run_hash(), name
    for name, value in [("seed", 1), ("prune_fraction", 0.5), ("scope", "layerwise")]:
        assert LotteryConfig(**OWN, steps=300, **{name: value}).run_hash() != base.run_hash(), name


def test_a_stored_config_is_read_back_as_its_own_kind():
    preset = PresetConfig.from_preset("conv2", steps=500)
    own = LotteryConfig(**OWN, steps=300)
    assert type(LotteryConfig.from_dict(preset.to_dict())) is PresetConfig
    assert type(LotteryConfig.from_dict(own.to_dict())) is LotteryConfig
    assert LotteryConfig.from_dict(json.loads(json.dumps(own.to_dict()))) == own


def test_a_config_json_of_version_0_3_of_a_model_of_your_own_still_reads():
    # 0.3 wrote the presets' recipe settings into every run, at their defaults.
    stored = {**LotteryConfig(**OWN, steps=300).to_dict(), "dataset": "mnist",
              "optimizer": "adam", "learning_rate": 1.2e-3, "lr_milestones": [],
              "classes": [], "data_dir": None, "augment": False}
    config = LotteryConfig.from_dict(stored)
    assert type(config) is LotteryConfig and not hasattr(config, "dataset")
    # a recipe setting away from its default is no setting of this kind
    with pytest.raises(ValueError, match=r"Unknown config fields \['learning_rate'\]"):
        LotteryConfig.from_dict({**stored, "learning_rate": 0.1})


def test_a_model_of_your_own_needs_an_import_path_and_its_data():
    with pytest.raises(ValueError, match=r"model must be the import path 'module:function'.*"
                                         r"Received: model='lenet300'"):
        LotteryConfig(model="lenet300", data="mypkg.data:load")
    with pytest.raises(ValueError, match=r"needs its data.*Received: model='mypkg.nets:build', "
                                         r"data=None"):
        LotteryConfig(model="mypkg.nets:build")


def test_every_setting_with_choices_is_checked_against_them():
    for name, value in [("monitor_mode", "up"), ("on_divergence", "retry"), ("scope", "local"),
                        ("strategy", "gpu"), ("controls", ("random_reinit", "shuffle")),
                        ("pruner", "obd")]:
        with pytest.raises(ValueError, match=rf"{name} must be one of .*Received: {name}="):
            LotteryConfig(**OWN, steps=300, **{name: value})
    LotteryConfig(**OWN, steps=300, pruner=None)  # None: the mode's default pruner


def test_round_fraction_gives_each_layer_its_iterative_sparsity():
    config = LotteryConfig(**OWN, steps=300, prune_fraction=0.2)
    # two rounds of 20% leave 64%: one shot to 64% remaining is 36% pruned
    assert config.round_fraction(0.2, 0.64) == pytest.approx(0.36)
    # a layer at half rate after the same two rounds keeps 0.9^2
    assert config.round_fraction(0.1, 0.64) == pytest.approx(1 - 0.81)


def test_monitor_direction():
    assert monitor_is_maximized("val_accuracy") and monitor_is_maximized("val_auc")
    assert not monitor_is_maximized("val_loss")
    assert not monitor_is_maximized("val_mean_absolute_error")
    assert LotteryConfig(**OWN, steps=300, monitor="val_auc").maximize
    assert not LotteryConfig(**OWN, steps=300, monitor="val_auc", monitor_mode="min").maximize


def test_the_generic_runner_never_imports_the_presets():
    runner = pathlib.Path(kl.__file__).parent / "runner"
    allowed = {"cli.py", "commands.py"}  # the one place a run goes preset or own model
    offenders = []
    for path in runner.glob("*.py"):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if isinstance(node, ast.ImportFrom) and node.module == "keras_lottery.runner":
                names = [f"keras_lottery.runner.{a.name}" for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.startswith("keras_lottery.runner.presets")]
    assert offenders == []
