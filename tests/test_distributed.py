"""The driver under MirroredStrategy (two logical CPUs) and under
MultiWorkerMirroredStrategy with two real worker processes on loopback."""

import glob
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import tensorflow as tf

import keras_lottery as kl
from conftest import tiny_config
from keras_lottery.runner.presets import pipeline
from keras_lottery.runner.distribute import local_cluster, use_threads
from keras_lottery.runner.presets import preset_engine
from keras_lottery.files import read_npz

HERE = os.path.dirname(os.path.abspath(__file__))


def _replicas(variable):
    return [v.numpy() for v in variable.value.values]


def test_threads_after_tensorflow_started_warn_and_leave_the_pools():
    """TensorFlow sets its pools up at its first op: a later count that
    differs is not applied, and says so; 0, or the pools' own count, is
    silent."""
    float(tf.constant(1.0) + 1.0)  # TensorFlow has started
    pools = tf.config.threading
    before = (pools.get_intra_op_parallelism_threads(), pools.get_inter_op_parallelism_threads())
    with pytest.warns(RuntimeWarning, match=r"threads=7 was not applied: TensorFlow had "
                                            r"already started its thread pools"):
        use_threads(7)
    assert (pools.get_intra_op_parallelism_threads(),
            pools.get_inter_op_parallelism_threads()) == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        use_threads(0)
        if before[0] == before[1] != 0:
            use_threads(before[0])
    with pytest.warns(RuntimeWarning, match=r"threads=1, inter_op_threads=9 was not applied"):
        use_threads(1, inter_op_threads=9)


@pytest.mark.parametrize("counts, pools", [((1, 2), "1 2"), ((3, 0), "3 3"), ((0, 2), "0 2")])
def test_threads_set_each_pool_before_tensorflow_starts(counts, pools):
    """Per op and side by side, each its own count (0 side by side: as
    many as per op; 0 per op: TensorFlow's default, reported as 0)."""
    script = ("import warnings, tensorflow as tf; warnings.simplefilter('error'); "
              "from keras_lottery.runner.distribute import use_threads; "
              f"use_threads({counts[0]}, inter_op_threads={counts[1]}); "
              "float(tf.constant(1.0) + 1.0); p = tf.config.threading; "
              "print(p.get_intra_op_parallelism_threads(), p.get_inter_op_parallelism_threads())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == pools


def test_mirrored_run_matches_single_device_masks(tmp_path, fashion_small):
    assert len(tf.config.list_logical_devices("CPU")) == 2
    single = kl.find_ticket(tiny_config(tmp_path / "one", rounds=2, steps=100), fashion_small)
    runner, _ = preset_engine(tiny_config(tmp_path / "two", rounds=2, steps=100,
                                          strategy="mirrored"), fashion_small)
    assert kl.make_strategy("mirrored").num_replicas_in_sync == 2
    mirrored = runner.run()
    overlaps = []
    for r in range(3):
        a = read_npz(os.path.join(single.run_dir, f"round_{r:02d}", "masks.npz"))
        b = read_npz(os.path.join(mirrored.run_dir, f"round_{r:02d}", "masks.npz"))
        overlaps.append(kl.mask_overlap(a, b))
    # Identical batches and seeds; only the order of the float reduction over
    # the two replicas differs, which can flip weights at the threshold.
    assert min(overlaps) >= 0.999, overlaps
    slots = kl.mask_slots(runner.model)
    assert [s.key for s in slots] == ["fc1/kernel", "fc2/kernel", "output/kernel"]
    for slot in slots:
        masks, kernels = _replicas(slot.mask), _replicas(slot.kernel)
        assert len(masks) == 2 and np.array_equal(masks[0], masks[1])
        assert np.array_equal(kernels[0], kernels[1])
        assert all(np.all(k[m == 0] == 0) for k, m in zip(kernels, masks))
    kl.restore_weights(runner.model, runner.rewind_point)
    first = slots[0]
    assert first.layer is runner.model.get_layer("fc1")
    expected = runner.rewind_point.values[[w.path for w in kl.rewind.rewindable_weights(runner.model)]
                                          .index(first.kernel.path)]
    replicas = _replicas(first.kernel)
    assert len(replicas) == 2
    for replica in replicas:
        assert np.array_equal(replica, expected * _replicas(first.mask)[0])


def _start_workers(argv_for, logs):
    procs = []
    for index, tf_config in enumerate(local_cluster(2)):
        env = {**os.environ, "TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "3"}
        procs.append(subprocess.Popen(argv_for(index), env=env, stdout=open(logs[index], "w"),
                                      stderr=subprocess.STDOUT, text=True, cwd=HERE))
    return procs


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_worker_processes_agree_and_only_the_chief_writes(tmp_path, fashion):
    logdir = tmp_path / "runs"
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = _start_workers(
        lambda i: [sys.executable, "multiworker_worker.py", str(logdir), str(tmp_path / f"w{i}"), "300"],
        logs)
    for proc, log in zip(procs, logs):
        assert proc.wait(timeout=300) == 0, open(log).read()[-3000:]
    masks = [read_npz(tmp_path / f"w{i}.masks.npz") for i in range(2)]
    # 2 rounds x 300 steps x 6 all-reduces: a thread per collective would be >3000.
    assert all(int(open(tmp_path / f"w{i}.threads").read()) < 600 for i in range(2))
    assert sorted(masks[0]) == sorted(masks[1]) == ["fc1/kernel", "fc2/kernel", "output/kernel"]
    for name in masks[0]:
        assert np.array_equal(masks[0][name], masks[1][name]), name
    assert masks[0]["fc1/kernel"].mean() == pytest.approx(0.8, abs=1e-4)
    # The chief (worker 0) wrote everything; worker 1 wrote nothing.
    events = glob.glob(f"{logdir}/**/events.out.tfevents.*", recursive=True)
    writers = {re.search(r"\.(\d+)\.\d+\.v2$", os.path.basename(e)).group(1) for e in events}
    assert events and writers == {str(procs[0].pid)}
    stored = read_npz(glob.glob(f"{logdir}/*/round_01/masks.npz")[0])
    assert sorted(stored) == sorted(masks[0])
    assert all(np.array_equal(stored[k], masks[0][k]) for k in stored)
    # Data sharding: each worker trains on its half of the global batch.
    labels = [np.load(tmp_path / f"w{i}.labels.npy") for i in range(2)]
    data = kl.data.load("fashion_mnist")
    batches = pipeline.train_batches(data.x_train, data.y_train, 60, seed=0)
    for step, (_, expected) in enumerate(batches.take(3)):
        got = np.concatenate([labels[0][step], labels[1][step]])
        assert np.array_equal(got, expected.numpy()), step


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_killed_worker_makes_the_other_fail_fast(tmp_path, fashion):
    logdir = tmp_path / "runs"
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    args = ["-m", "keras_lottery", "run", "--preset", "lenet300", "--dataset", "fashion_mnist",
            "--steps", "20000", "--rounds", "1", "--strategy", "multiworker",
            "--logdir", str(logdir), "--verbose", "2"]
    procs = _start_workers(lambda i: [sys.executable, *args], logs)
    deadline = time.time() + 180
    while not glob.glob(f"{logdir}/*/round_00/events.out.tfevents.*"):
        assert time.time() < deadline and procs[0].poll() is None, open(logs[0]).read()[-3000:]
        time.sleep(0.2)
    time.sleep(2)  # well into training
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    code = procs[0].wait(timeout=120)  # bounded: never a hang
    elapsed = time.time() - killed_at
    out = open(logs[0]).read()
    assert code == 2, out[-3000:]
    assert "keras-lottery: error: a collective operation failed: another worker died" in out
    assert "Traceback" not in out
    assert elapsed < 90
