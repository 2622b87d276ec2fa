"""`python -m keras_lottery` runs the `keras-lottery` command line."""

import sys

from keras_lottery.runner.cli import main

sys.exit(main())
