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
    description="Lottery tickets (sparse trainable subnetworks) for Keras 3 and TensorFlow",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["keras_lottery", "keras_lottery.*"]),
    python_requires=">=3.10",
    install_requires=[
        # On a machine without a GPU, `tensorflow-cpu` is the same package,
        # smaller: `pip install tensorflow-cpu` first, then
        # `pip install --no-deps keras-lottery` with the other requirements.
        "tensorflow>=2.16",
        "keras>=3",
        "tensorboard",
        "tensorflow-datasets",
        # tensorflow-datasets imports it to download and prepare a dataset
        # but does not require it (4.9.10): without it MNIST/CIFAR-10 cannot
        # be fetched.
        "importlib_resources",
        "numpy",
        "matplotlib",
    ],
    extras_require={
        "tfmot": ["tensorflow-model-optimization>=0.8", "tf_keras"],
        # scikit-learn ships the small real datasets the tests train on offline
        # (load_digits, load_breast_cancer, load_diabetes).
        "dev": ["pytest>=7", "scikit-learn", "ai-edge-litert"],
        "tflite": ["ai-edge-litert"],  # the LiteRT interpreter that runs exported .tflite files
    },
    entry_points={"console_scripts": ["keras-lottery=keras_lottery.runner.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Keras",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
