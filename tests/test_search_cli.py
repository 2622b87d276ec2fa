"""`keras-lottery run --model module:function --data module:function`, as a user runs it.

The model and data functions live in a module in a temporary directory,
imported from the current directory as the README says.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from keras_lottery.files import read_npz

# Each test starts keras-lottery processes (`pytest -m slow`; CI runs it).
pytestmark = pytest.mark.slow

MODULE = '''
import keras
import numpy as np
from sklearn.datasets import load_digits


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(64, activation="relu", name="hidden"),
                              keras.layers.Dense(10, name="out")])
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def build_unprunable():
    model = keras.Sequential([keras.Input((64,)), keras.layers.Activation("relu")])
    model.compile("adam", "mse")
    return model


def load():
    data = load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1100], y[:1100]), (x[1100:1450], y[1100:1450]), (x[1450:], y[1450:])
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "mynets.py").write_text(textwrap.dedent(MODULE))
    return tmp_path


def _cli(cwd, *args, **popen):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    cmd = [sys.executable, "-m", "keras_lottery", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


# TensorFlow's C++ start-up lines (absl logging is set up before TF_CPP_MIN_LOG_LEVEL is read).
_TF_LOG = re.compile(r"^([IWE]\d{4} |WARNING: All log messages|To enable the following)")


def _run(cwd, *args, timeout=300):
    proc = _cli(cwd, *args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, "\n".join(l for l in err.splitlines() if not _TF_LOG.match(l))


SEARCH = ("run", "--model", "mynets:build", "--data", "mynets:load", "--rounds", "2",
          "--steps", "300", "--eval-every", "100", "--checkpoint-every", "100",
          "--controls", "random_reinit", "--rates", "out=0.1", "--verbose", "2")


def _masks(logdir):
    return {p[len(str(logdir)):]: read_npz(p) for p in glob.glob(f"{logdir}/*/round_*/masks.npz")}


def test_run_report_and_export_a_model_and_data_of_your_own(project):
    code, out, err = _run(project, *SEARCH, "--eval-batch-size", "50", "--logdir", "runs")
    assert code == 0, err[-3000:]
    assert "| round | branch        | % remaining | early-stop iter | test acc @ES |" in out
    (run_dir,) = glob.glob(f"{project}/runs/build_load_iterative_*")
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["model"] == "mynets:build" and config["data"].startswith("mynets:load#")
    assert config["eval_batch_size"] == 50  # instability below finds the run with it
    code, out, err = _run(project, "report", run_dir)
    assert code == 0, err[-3000:]
    assert "| test acc @ES |" in out
    code, out, err = _run(project, "export", run_dir, "--round", "2", "ticket_out")
    assert code == 0, err[-3000:]
    assert os.path.exists(project / "ticket_out" / "ticket.keras")
    # The instability of a round of the run: two copies, as branches of it.
    code, out, err = _run(project, "instability", run_dir, "--round", "2", "--rewind-steps",
                          "0,100", "--points", "3")
    assert code == 2 and "Pass --model mynets:build --data mynets:load" in err, err[-3000:]
    code, out, err = _run(project, "instability", run_dir, "--round", "2", "--rewind-steps",
                          "0,100", "--points", "3", "--model", "mynets:build",
                          "--data", "mynets:load")
    assert code == 0, err[-3000:]
    assert re.search(r"round 2  \d+\.\d% remaining  k=0 +instability \(pp\): test \d+\.\d\d"
                     r"  val \d+\.\d\d\n", out), out
    assert "k=100" in out
    measured = json.load(open(os.path.join(run_dir, "round_02", "instability_k100.json")))
    assert measured["curve"]["alphas"] == [0.0, 0.5, 1.0]
    ticket = json.load(open(os.path.join(run_dir, "round_02", "metrics.json")))
    assert measured["percent_remaining"] == pytest.approx(ticket["percent_remaining"])
    code, out, err = _run(project, "report", run_dir)
    assert code == 0, err[-3000:]
    assert "Instability (linear mode connectivity)" in out and "k=100" in out


def test_sigkill_mid_round_then_rerun_gives_the_same_masks(project):
    proc = _cli(project, *SEARCH, "--logdir", "killed")
    deadline = time.time() + 240
    while time.time() < deadline and not glob.glob(f"{project}/killed/*/round_01/checkpoint.npz"):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not glob.glob(f"{project}/killed/*/round_01/metrics.json"), "not killed mid-round"
    code, _, err = _run(project, *SEARCH, "--logdir", "killed")
    assert code == 0, err[-3000:]
    code, _, err = _run(project, *SEARCH, "--logdir", "clean")
    assert code == 0, err[-3000:]
    killed, clean = _masks(project / "killed"), _masks(project / "clean")
    assert sorted(killed) == sorted(clean) and len(killed) == 3
    for key in killed:
        assert all(np.array_equal(killed[key][k], clean[key][k]) for k in killed[key]), key


def test_a_second_process_on_the_same_run_fails_at_once_naming_the_holder(project):
    first = _cli(project, *SEARCH[:-6], "--steps", "100000", "--eval-every", "1000",
                 "--logdir", "runs")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not glob.glob(f"{project}/runs/*/lock"):
            assert first.poll() is None, first.communicate()[1][-3000:]
            time.sleep(0.05)
        code, _, err = _run(project, *SEARCH[:-6], "--steps", "100000", "--eval-every", "1000",
                            "--logdir", "runs")
        assert code == 2
        assert f"process {first.pid}" in err or f"pid {first.pid}" in err, err
        assert len(err.strip().splitlines()) == 1, err
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("args, message", [
    (("--model", "mynets:nothing", "--data", "mynets:load"), "has no 'nothing'"),
    (("--model", "nonexistent_module:build", "--data", "mynets:load"), "cannot import module"),
    (("--model", "mynets:build_unprunable", "--data", "mynets:load"), "has no prunable weight"),
    (("--model", "mynets:build", "--data", "mynets:load", "--monitor", "val_auc"),
     "Available: ['test_accuracy', 'test_loss', 'train_accuracy', 'train_loss', 'val_accuracy'"),
    (("--model", "mynets:build", "--data", "mynets:load", "--learning-rate", "0.1"),
     "learning_rate is a setting of the presets"),
    (("--model", "mynets:build"), "needs its data"),
])
def test_bad_input_is_one_line_with_exit_code_2(project, args, message):
    code, _, err = _run(project, "run", *args, "--steps", "20", "--eval-every", "10",
                        "--logdir", "runs", "--verbose", "0")
    assert code == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-lottery: error:"), err
    assert message in lines[0], lines[0]
