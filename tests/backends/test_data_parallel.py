"""JAX data parallelism: LotterySearch under keras.distribution.DataParallel on
two (host-platform) devices finds the masks one device finds."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, keras, numpy as np
    import keras_lottery as kl
    from helpers import build_model, digits
    from keras_lottery.files import read_npz

    assert jax.device_count() == 2, jax.devices()
    train, val, _ = digits()
    fit = dict(steps=60, eval_every=20, batch_size=64)
    runs = {}
    for name, strategy in [("one", None), ("two", keras.distribution.DataParallel(devices=jax.devices()))]:
        search = kl.LotterySearch(build_model, rounds=3, logdir=sys.argv[1] + "/" + name, verbose=0,
                                  strategy=strategy)
        result = search.fit(train, val, **fit)
        masks = {r: read_npz(f"{result.run_dir}/round_{r:02d}/masks.npz") for r in (1, 2, 3)}
        devices = None
        if strategy is not None:
            with strategy.scope():
                model = result.ticket(round=3)
            devices = len(model.trainable_variables[0].value.sharding.device_set)
        runs[name] = dict(masks=masks, devices=devices,
                          acc=[r["val_accuracy_final"] for r in result.branch("ticket")])
    agreement, counts = {}, {}
    for r in (1, 2, 3):
        one, two = runs["one"]["masks"][r], runs["two"]["masks"][r]
        same = sum(int((one[k] == two[k]).sum()) for k in one)
        total = sum(one[k].size for k in one)
        agreement[r], counts[r] = same / total, total - same
    print(json.dumps({"agreement": agreement, "differing": counts, "devices": runs["two"]["devices"],
                      "acc_one": runs["one"]["acc"], "acc_two": runs["two"]["acc"]}))
""")


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="keras.distribution.DataParallel is JAX's (this runs in the jax suite)")
def test_data_parallel_on_two_devices_finds_the_masks_of_one_device(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": HERE,
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, cwd=HERE,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(result)
    assert result["devices"] == 2  # the variables really live on both devices
    # Averaging the two halves' gradients equals the one-device gradient up to
    # float32 summation order, so a weight at the pruning threshold may change sides.
    for r, agreement in result["agreement"].items():
        assert agreement >= 0.999, (r, result)
