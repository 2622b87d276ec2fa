"""`python -m keras_lottery` runs the `keras-lottery` command line."""

from keras_lottery.runner.cli import console

console()
