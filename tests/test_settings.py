"""`runner/settings.py`: each setting declared once, its help everywhere."""

import dataclasses
import inspect
import re

import pytest

import keras_lottery as kl
from keras_lottery.runner import cli, settings
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.presets import PresetConfig
from keras_lottery.runner.search import SEARCH_SETTINGS


def _normalized(text: str) -> str:
    return " ".join(text.split())


def test_a_setting_without_help_is_refused():
    with pytest.raises(ValueError, match="Every setting needs its help text"):
        settings.setting(3)


def test_every_setting_of_both_kinds_has_its_help_in_the_docstring():
    for cls in (LotteryConfig, PresetConfig):
        doc = _normalized(cls.__doc__)
        for field in dataclasses.fields(cls):
            text = settings.help_of(cls, field.name)
            assert text, (cls.__name__, field.name)
        own = [f.name for f in dataclasses.fields(cls)
               if cls is LotteryConfig or f.name in PresetConfig.recipe_settings()
               or f.name == "model"]
        for name in own:
            assert _normalized(f"{name}: {settings.help_of(cls, name)}") in doc, name


def test_lottery_search_takes_the_configs_settings_with_their_defaults_and_help():
    parameters = inspect.signature(kl.LotterySearch).parameters
    assert list(parameters)[:2] == ["model", "strategy"]
    fields = {f.name: f for f in dataclasses.fields(LotteryConfig)}
    assert set(parameters) - {"model", "strategy"} == set(SEARCH_SETTINGS)
    for name in SEARCH_SETTINGS:
        assert parameters[name].default == settings.default_of(fields[name]), name
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    doc = _normalized(kl.LotterySearch.__doc__)
    for name in SEARCH_SETTINGS:
        assert _normalized(f"{name}: {settings.help_of(LotteryConfig, name)}") in doc, name
    assert doc.index("Args:") < doc.index("rounds: pruning rounds") < doc.index("Example:")


def test_lottery_search_refuses_what_is_no_setting_saying_where_it_goes():
    with pytest.raises(ValueError, match=r"unknown settings \['steps'\] \(\['steps'\] are given "
                                         r"to fit\(\)"):
        kl.LotterySearch(lambda: None, steps=100)
    with pytest.raises(ValueError, match=r"unknown settings \['learning_rate'\]. Accepted: \["):
        kl.LotterySearch(lambda: None, learning_rate=0.1)
    search = kl.LotterySearch(lambda: None, rates=None, pruner_options=None, rounds=2)
    assert search._config.rates == {} and search._config.rounds == 2


def test_each_run_flag_shows_its_settings_help_and_choices(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # one line per flag
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = _normalized(capsys.readouterr().out)
    for field in dataclasses.fields(PresetConfig):
        if not settings.flagged(field):
            assert f"--{field.name.replace('_', '-')} " not in text
            continue
        flag = "--" + field.name.replace("_", "-")
        assert f"{flag} {field.name.upper()}" in text, flag
        assert _normalized(settings.help_of(PresetConfig, field.name)) in text, flag
    assert re.search(r"--monitor-mode \{auto,min,max\}|--monitor-mode MONITOR_MODE", text)


def test_a_preset_only_flag_with_a_model_of_your_own_is_refused(capsys):
    status = cli.main(["run", "--model", "mypkg.nets:build", "--data", "mypkg.data:load",
                       "--optimizer", "sgd"])
    assert status == 2
    assert "optimizer is a setting of the presets" in capsys.readouterr().err


def test_settings_outside_the_identity_are_declared_so():
    unhashed = {f.name for f in dataclasses.fields(PresetConfig) if not settings.hashed(f)}
    assert unhashed == {"logdir", "data_dir", "strategy", "verbose", "name", "checkpoint_every",
                        "rounds", "controls", "on_divergence", "test_curves", "threads",
                        "inter_op_threads"}
