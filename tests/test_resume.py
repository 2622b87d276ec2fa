"""A run killed with SIGKILL mid-round resumes to the same masks and metrics."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_lottery.files import read_npz

# Minutes: preset runs killed with kill -9 and resumed (`pytest -m slow`; CI runs it).
pytestmark = pytest.mark.slow

ARGS = ["run", "--preset", "lenet300", "--dataset", "fashion_mnist", "--steps", "800",
        "--rounds", "2", "--eval-every", "100", "--checkpoint-every", "100",
        "--controls", "random_reinit", "--verbose", "2"]


def _cli(logdir, **popen):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "keras_lottery", *ARGS, "--logdir", str(logdir)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _tree(logdir):
    masks = {p[len(str(logdir)):]: read_npz(p) for p in glob.glob(f"{logdir}/*/round_*/masks.npz")}
    metrics = {p[len(str(logdir)):]: json.load(open(p))
               for p in glob.glob(f"{logdir}/*/round_*/**/metrics.json", recursive=True)}
    return masks, metrics


def test_sigkill_mid_round_then_rerun_matches_uninterrupted_run(tmp_path, fashion):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _cli(killed)
    deadline = time.time() + 240
    while time.time() < deadline and not glob.glob(f"{killed}/*/round_01/checkpoint.npz"):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert glob.glob(f"{killed}/*/round_01/checkpoint.npz"), "the run was not killed mid-round"
    assert not glob.glob(f"{killed}/*/round_01/metrics.json")

    resumed = _cli(killed)
    out_resumed = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out_resumed[-3000:]
    uninterrupted = _cli(clean)
    out_clean = uninterrupted.communicate(timeout=600)[0]
    assert uninterrupted.returncode == 0, out_clean[-3000:]

    masks_a, metrics_a = _tree(killed)
    masks_b, metrics_b = _tree(clean)
    assert sorted(masks_a) == sorted(masks_b) and len(masks_a) == 3
    for key in masks_a:
        for name in masks_a[key]:
            assert np.array_equal(masks_a[key][name], masks_b[key][name]), (key, name)
    assert sorted(metrics_a) == sorted(metrics_b) and len(metrics_a) == 5
    for key in metrics_a:
        a, b = metrics_a[key], metrics_b[key]
        assert a["early_stop_step"] == b["early_stop_step"], key
        # test values exist at the early-stop, checkpoint-best and last records
        for field in ("val_loss", "test_accuracy", "train_loss"):
            np.testing.assert_allclose([h.get(field, np.nan) for h in a["history"][1:]],
                                       [h.get(field, np.nan) for h in b["history"][1:]],
                                       rtol=1e-5, err_msg=key)
        assert a["test_accuracy_at_early_stop"] == b["test_accuracy_at_early_stop"], key
    assert not glob.glob(f"{killed}/**/checkpoint.npz", recursive=True)
