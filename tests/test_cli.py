"""The keras-lottery command line: errors, report, export."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import keras_lottery as kl
import keras_lottery.runner.presets.loop_trainer  # noqa: F401
from conftest import tiny_config
from keras_lottery.runner import cli, commands
from keras_lottery.runner.presets import data


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--rounds", "-1"], "--rounds: rounds must be an integer >= 0. Received: rounds=-1"),
        (["run", "--prune-fraction", "1.5"], "--prune-fraction: prune_fraction must be a number in [0, 1). Received: prune_fraction=1.5"),
        (["run", "--controls", "random"], "--controls: controls must be one of ['random_reinit', 'random_prune', 'lr_rewind', 'inverted_scores']. Received: controls='random'"),
        (["run", "--mode", "twice"], "argument --mode: invalid choice: 'twice' (choose from 'iterative', 'oneshot', 'gradual')"),
        (["run", "--pruner", "obd"], "argument --pruner: invalid choice: 'obd'"),
        (["run", "--pruner-options", "end"], "argument --pruner-options: expected option=value pairs like end=0.75,frequency=50, got 'end'"),
        (["run", "--mode", "gradual", "--sparsities", "50", "--pruner-options", "end=1.5"], "gradual pruning needs 0 <= begin < end <= 1"),
        (["run", "--pruner", "gradual", "--sparsities", "50"], "pruner 'gradual' prunes while the network trains, once per target: it needs mode in ['gradual']"),
        (["run", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
        (["run", "--rates", "output"], "argument --rates: expected layer=rate pairs like output=0.1,conv1=0.1, got 'output'"),
        (["run", "--preset", "lenet5"], "argument --preset: invalid choice: 'lenet5'"),
        (["run", "--mode", "oneshot"], "needs sparsities"),
        (["run", "--sparsities", "50,x", "--mode", "oneshot"], "argument --sparsities: expected a comma-separated list of floats, got '50,x'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = cli.main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err


def test_missing_dataset_fails_fast_naming_both_ways(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "_system_roots", lambda spec: [])
    monkeypatch.setattr(data, "_system_tfds_dirs", lambda: [])
    monkeypatch.setattr(data, "_reachable", lambda url, timeout=3.0: False)
    code = cli.main(["run", "--preset", "lenet300", "--dataset", "mnist", "--data-dir", str(tmp_path),
                     "--logdir", str(tmp_path / "runs"), "--verbose", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "mnist" in err and "--data-dir" in err and "tensorflow-datasets" in err


# The flags of `keras-lottery run` users rely on (README, docs), written
# out by hand: a flag renamed or lost fails here.
RUN_FLAGS = {
    "--augment", "--batch-size", "--checkpoint-every", "--classes", "--controls", "--data",
    "--data-dir", "--dataset", "--dropout", "--eb-every", "--eb-stop", "--eb-threshold",
    "--eb-window", "--eval-batch-size", "--eval-every", "--granularity", "--help", "--ignore",
    "--learning-rate", "--logdir", "--lr-gamma", "--lr-milestones", "--masks-from", "--mode", "--model",
    "--momentum", "--monitor", "--monitor-mode", "--name", "--on-divergence", "--optimizer",
    "--preset", "--prune-fraction", "--pruner", "--pruner-options", "--rates", "--rewind-candidates", "--rewind-step",
    "--rounds", "--scope", "--seed", "--sparsities", "--stability-points",
    "--stability-threshold", "--steps", "--strategy", "--test-curves", "--threads", "--inter-op-threads",
    "--train-eval-examples",
    "--validation",
    "--verbose", "--warmup-steps", "--weight-decay",
}


def test_run_help_documents_the_flags_users_rely_on(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # no flag broken across lines
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*[a-z])", text))
    assert flags == RUN_FLAGS, (sorted(flags - RUN_FLAGS), sorted(RUN_FLAGS - flags))
    assert "--architecture" not in text  # set by the search itself


def test_every_run_flag_sets_its_config_field(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("keras_lottery.runner.commands.run", lambda config: seen.update(
        config=config))
    argv = ["run", "--preset", "lenet300", "--rounds", "3", "--learning-rate", "0.5",
            "--controls", "random_reinit,random_prune", "--rewind-step", "auto",
            "--eb-every", "10", "--eb-stop", "true", "--logdir", str(tmp_path)]
    assert cli.main(argv) == 0
    config = seen["config"]
    assert (config.rounds, config.learning_rate, config.controls, config.rewind_step,
            config.eb_every, config.eb_stop) == (3, 0.5, ("random_reinit", "random_prune"),
                                                 "auto", 10, True)


def test_gradual_flags_set_the_pruner_and_its_typed_options(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("keras_lottery.runner.commands.run", lambda config: seen.update(
        config=config))
    argv = ["run", "--preset", "lenet300", "--mode", "gradual", "--sparsities", "50,20",
            "--pruner-options", "end=0.75,frequency=50,power=1", "--logdir", str(tmp_path)]
    assert cli.main(argv) == 0
    config = seen["config"]
    assert (config.mode, config.pruner_name, config.sparsities) == ("gradual", "gradual",
                                                                     (50.0, 20.0))
    assert config.pruner_options == {"end": 0.75, "frequency": 50, "power": 1}
    assert type(config.pruner_options["frequency"]) is int


def test_report_and_export(tmp_path, fashion_small, capsys):
    result = kl.find_ticket(tiny_config(tmp_path, rounds=1, controls=("random_prune",)), fashion_small)
    commands.report(result.run_dir)
    out = capsys.readouterr().out
    assert "random_prune" in out and "| 1     | ticket" in out
    png = os.path.join(result.run_dir, "accuracy_vs_sparsity.png")
    assert open(png, "rb").read(4) == b"\x89PNG"

    sizes = commands.export(result.run_dir, 1, str(tmp_path / "ticket"))
    assert sizes[0].zero_fraction > 0.15
    model = commands.load_ticket(result.run_dir, 1)
    x = fashion_small.x_test[:16]
    stats = kl.runner.presets.loop_trainer.Splits.from_dataset(fashion_small, 0).stats
    images = ((x / 255.0 - stats[0]) / stats[1]).astype("float32")
    script = (
        "import numpy as np, tensorflow as tf, sys;"
        f"m = tf.saved_model.load({str(tmp_path / 'ticket' / 'savedmodel')!r});"
        f"np.save({str(tmp_path / 'y.npy')!r}, m.serve(np.load({str(tmp_path / 'x.npy')!r})).numpy())"
    )
    np.save(tmp_path / "x.npy", images)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(images, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match=r"round must be a completed round .* Received: round=7; completed: \[0, 1\]"):
        commands.export(result.run_dir, 7, str(tmp_path / "nope"))


def test_console_script_exits_with_every_file_of_the_run_written(tmp_path):
    """The console script skips the interpreter's final garbage collection
    (`cli.console`); the run it leaves must be whole: result, masks and
    TensorBoard events that read to their last record. The lenet300
    recipe's TensorFlow pools (one thread per op, two ops side by side)
    are in place when the process exits."""
    import tensorflow as tf

    logdir = tmp_path / "runs"
    script = ("import atexit, tensorflow as tf; from keras_lottery.runner import cli; "
              "pools = tf.config.threading; atexit.register(lambda: print('pools', "
              "pools.get_intra_op_parallelism_threads(), pools.get_inter_op_parallelism_threads()"
              ")); cli.console()")
    done = subprocess.run(
        [sys.executable, "-c", script,
         "run", "--preset", "lenet300", "--dataset", "fashion_mnist", "--steps", "30",
         "--eval-every", "10", "--rounds", "1", "--logdir", str(logdir), "--verbose", "0"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Exception ignored" not in done.stderr and "was not applied" not in done.stderr
    assert done.stdout.splitlines()[-1] == "pools 1 2"
    (run_dir,) = logdir.iterdir()
    assert [row["round"] for row in json.loads((run_dir / "result.json").read_text())["rows"]] == [0, 1]
    steps, tags = {}, set()
    for path in sorted(run_dir.glob("*/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):  # DataLossError if cut
            for value in event.summary.value:
                steps.setdefault(path.parent.name, set()).add(event.step)
                tags.add(value.tag)
    assert steps["round_00"] == steps["round_01"] == {0, 10, 20, 30}
    assert {"val/loss", "test/accuracy", "accuracy_vs_sparsity"} <= tags
