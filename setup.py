"""Packaging for keras-lottery."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "keras_lottery" / "__init__.py").read_text()
).group(1)

setup(
    name="keras-lottery",
    version=VERSION,
    description="Lottery tickets (sparse trainable subnetworks) for Keras 3 on any backend",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["keras_lottery", "keras_lottery.*"]),
    python_requires=">=3.10",
    # Backend-free: the library and LotterySearch run on any Keras 3 backend.
    # Pick one with an extra: keras-lottery[tensorflow] (also the presets'
    # driver, tf.distribute, SavedModel export, tensorflow-datasets),
    # keras-lottery[jax] or keras-lottery[torch].
    install_requires=[
        "keras>=3",
        "numpy",
        # Its own protos and event-file writer: TensorBoard logs without TensorFlow.
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        # On a machine without a GPU, `tensorflow-cpu` is the same package,
        # smaller: `pip install tensorflow-cpu` first, then
        # `pip install --no-deps keras-lottery` with the other requirements.
        "tensorflow": [
            "tensorflow>=2.16",
            "tensorflow-datasets",
            # tensorflow-datasets imports it to download and prepare a dataset
            # but does not require it (4.9.10): without it MNIST/CIFAR-10 cannot
            # be fetched.
            "importlib_resources",
        ],
        "jax": ["jax", "jaxlib"],
        # The CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu
        "torch": ["torch"],
        # The LiteRT interpreter: deploy's .tflite exports are checked on it
        # (`keras_lottery.deploy`, `export --format tflite...`).
        "tflite": ["ai-edge-litert"],
        # The TensorFlow cross-check (TFMOT runs on tf_keras, so on TensorFlow).
        "tfmot": ["tensorflow-model-optimization>=0.8", "tf_keras", "tensorflow>=2.16"],
        # The test suite of the README (`pip install -e ".[dev,tfmot]"`) runs on
        # TensorFlow; scikit-learn ships the small real datasets the tests
        # train on offline (load_digits, load_breast_cancer, load_diabetes);
        # ai-edge-litert runs the deployment tests (the [tflite] extra). In CI
        # (CI=true) a test skipped for a missing dependency fails.
        # The JAX and PyTorch suites of .ci/run install "[jax,test]" / "[torch,test]".
        "test": ["pytest>=7", "scikit-learn"],
        # keras-hub (models built from config in tests/test_any_model.py)
        # requires tensorflow-text, so it stays in the TensorFlow suite.
        "dev": ["pytest>=7", "scikit-learn", "tensorflow>=2.16", "tensorflow-datasets",
                "importlib_resources", "ai-edge-litert", "keras-hub"],
    },
    entry_points={"console_scripts": ["keras-lottery=keras_lottery.runner.cli:console"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Keras",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
