"""Without TensorFlow: keras-lottery imports, and each TensorFlow-only feature
fails with one message naming what to install. TensorFlow is hidden from a
subprocess (`sys.modules["tensorflow"] = None`), so this holds even where it
is installed."""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["tensorflow"] = None            # import tensorflow -> ModuleNotFoundError
    sys.modules["tensorflow_datasets"] = None
    import keras, numpy as np
    import keras_lottery as kl
    from keras_lottery.runner import cli, commands, reports, tensorboard  # noqa: F401
    INSTALL = 'pip install "keras-lottery[tensorflow]"'

    def fails(what, call):
        try:
            call()
        except ImportError as error:
            assert INSTALL in str(error) and what in str(error), str(error)
            print("ok:", error)
        else:
            raise AssertionError(f"{what}: no error")

    fails("tf.distribute strategies", lambda: kl.make_strategy("mirrored"))
    config = kl.PresetConfig.from_preset("lenet300", dataset="fashion_mnist", steps=10, rounds=1)
    fails("The presets' driver", lambda: kl.find_ticket(config))
    fails("The presets' driver", lambda: __import__("keras_lottery.runner.presets.pipeline"))
    model = kl.prunable(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    fails("SavedModel export", lambda: kl.save_ticket(model, sys.argv[1] + "/savedmodel"))
    try:
        kl.data.load("mnist", data_dir=sys.argv[1])
    except kl.DatasetNotFoundError as error:
        assert INSTALL in str(error), str(error)
    print("tensorflow imported:", sys.modules.get("tensorflow") is not None)
""")


@pytest.mark.skipif(keras.backend.backend() == "tensorflow",
                    reason="the TensorFlow backend needs TensorFlow (this runs in the jax and torch suites)")
def test_tensorflow_only_features_fail_with_one_message_naming_the_extra(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("ok:") == 4
    assert "tensorflow imported: False" in done.stdout


def test_the_message_names_the_feature_and_the_extra(monkeypatch):
    from keras_lottery import compat

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r'^TFLite export needs TensorFlow, which is not installed\. '
                                          r'Install it with: pip install "keras-lottery\[tensorflow\]"'):
        compat.import_tensorflow("TFLite export")
