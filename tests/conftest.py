"""Shared test set-up: quiet TensorFlow, two logical CPUs, small models."""

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:
    import tensorflow as tf  # noqa: E402
except ModuleNotFoundError as _error:  # the JAX and PyTorch suites of .ci/run
    if _error.name != "tensorflow":
        raise
    tf = None

if tf is not None:
    # MirroredStrategy tests need two devices; split the CPU before TF starts.
    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )

# The tests that run on every Keras backend, TensorFlow not installed
# (`.ci/run` runs them with KERAS_BACKEND=jax and =torch): everything in
# tests/backends/ and these files. They are marked `backend_independent`.
# Without TensorFlow the other test files (which import it or run the
# presets' TensorFlow driver) are not collected: the TensorFlow suite runs them.
BACKEND_INDEPENDENT_FILES = ("test_branches.py", "test_config.py", "test_engine.py", "test_files.py",
                             "test_fit_trainer.py", "test_lock.py", "test_mask_math.py",
                             "test_rebuild.py", "test_reports.py", "test_rewind.py",
                             "test_settings.py", "test_tfmot_api.py", "test_trainer.py")
_HERE = os.path.dirname(os.path.abspath(__file__))
if tf is None:
    collect_ignore = sorted(
        name for name in os.listdir(_HERE)
        if name.endswith(".py") and name != "conftest.py" and name not in BACKEND_INDEPENDENT_FILES
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = os.path.abspath(str(item.fspath))
        if (path.startswith(os.path.join(_HERE, "backends") + os.sep)
                or os.path.dirname(path) == _HERE and os.path.basename(path) in BACKEND_INDEPENDENT_FILES):
            item.add_marker(pytest.mark.backend_independent)


# In CI (CI=true) a test skipped for a missing module or dataset fails: a
# green run must have run everything. A skip whose reason says which
# `.ci/run` suite runs the test instead ("... suite has it", e.g. PyTorch's
# DataLoader tests under TensorFlow) stays a skip.
_MISSING = re.compile(r"could not import|No module named|needs real |needs the \[")


def _missing_dependency(report) -> str | None:
    """The skip reason of a report skipped for a missing dependency."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    reason = str(report.longrepr[2])
    if _MISSING.search(reason) and "suite has it" not in reason:
        return reason
    return None


def _fail_in_ci(report) -> None:
    reason = _missing_dependency(report) if os.environ.get("CI") == "true" else None
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = (f"CI=true: skipped for a missing dependency, which fails in CI: "
                           f"{reason} (install it: pip install -e \".[dev,tfmot]\" and "
                           ".ci/run's apt packages)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_in_ci(outcome.get_result())


def pytest_report_header(config):
    return f"keras backend: {keras.backend.backend()}, tensorflow: {tf.__version__ if tf else 'not installed'}"


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts (and leaves) the global dtype policy at float32."""
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def mlp(seed: int = 0, inputs: int = 20, classes: int = 3) -> keras.Model:
    """A small functional MLP: 20 -> 32 -> 16 -> 3."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((inputs,))
    h = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    h = keras.layers.Dense(16, activation="relu", name="fc2")(h)
    return keras.Model(x, keras.layers.Dense(classes, name="out")(h))


def conv_model() -> keras.Model:
    """A small masked model with a Conv2D and Dense layers: (4, 4, 1) -> conv 8 -> fc 16 -> 3."""
    x = keras.Input((4, 4, 1))
    y = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
    y = keras.layers.Flatten()(y)
    y = keras.layers.Dense(16, activation="relu", name="fc")(y)
    y = keras.layers.Dense(3, name="out")(y)
    y = keras.layers.Softmax()(y)
    from keras_lottery import prunable

    return prunable(keras.Model(x, y))


def units_alive(mask):
    """Which units (slices along the last axis) of a mask keep any weight."""
    return mask.reshape(-1, mask.shape[-1]).any(axis=0)


def assert_whole_units(mask):
    """Asserts that every unit of a mask is kept whole or pruned whole."""
    flat = mask.reshape(-1, mask.shape[-1])
    assert np.all(flat.all(axis=0) | ~flat.any(axis=0)), "a unit is partly pruned"


def toy_data(n: int = 256, inputs: int = 20, classes: int = 3, seed: int = 0):
    """Random inputs with labels from a fixed random linear rule (learnable)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, inputs)).astype("float32")
    w = rng.normal(size=(inputs, classes))
    return x, (x @ w).argmax(axis=1)


def compile_for_test(model: keras.Model, optimizer="adam") -> keras.Model:
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="session")
def fashion():
    """Real Fashion-MNIST (Debian's dataset-fashion-mnist; CI installs it)."""
    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"needs real Fashion-MNIST: apt-get install dataset-fashion-mnist ({FASHION_DIR})")
    from keras_lottery.runner.presets import data

    return data.load("fashion_mnist")


@pytest.fixture(scope="session")
def fashion_small(fashion):
    """A slice of real Fashion-MNIST for driver tests on tiny budgets."""
    import dataclasses

    return dataclasses.replace(
        fashion,
        x_train=fashion.x_train[:3000], y_train=fashion.y_train[:3000],
        x_val=fashion.x_val[:500], y_val=fashion.y_val[:500],
        x_test=fashion.x_test[:1000], y_test=fashion.y_test[:1000],
    )


def tiny_config(tmp_path, **overrides):
    """A lenet300 config that trains in about a second per branch."""
    from keras_lottery import PresetConfig

    values = dict(dataset="fashion_mnist", steps=60, eval_every=20, rounds=2,
                  train_eval_examples=200, logdir=str(tmp_path / "runs"), verbose=0,
                  threads=0, inter_op_threads=0)  # the test process keeps TensorFlow's pools
    return PresetConfig.from_preset("lenet300", **{**values, **overrides})
