"""Training steps per second of a preset's own step function (issue 22).

Builds a preset's masked model and `LoopTrainer` on Fashion-MNIST and
times calls of its traced training loop (100 steps each, the presets'
tf.data stream), after one call that traces it. Run it under
TensorFlow's environment variables to compare thread pools, in turn:

    for pools in "" "TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1"; do
      env $pools python benchmarks/preset_step_rate.py conv2 --calls 3
    done

Usage:
    python benchmarks/preset_step_rate.py PRESET [--calls N]
"""

from __future__ import annotations

import argparse
import os
import time

import tensorflow as tf

from keras_lottery.runner.distribute import make_strategy
from keras_lottery.runner.presets import data as data_lib
from keras_lottery.runner.presets import pipeline
from keras_lottery.runner.presets.config import PresetConfig
from keras_lottery.runner.presets.loop_trainer import LoopTrainer, Splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--calls", type=int, default=20, help="timed calls of 100 steps")
    args = parser.parse_args()
    config = PresetConfig.from_preset(args.preset, dataset="fashion_mnist", threads=0)
    data = data_lib.load(config.dataset, validation=config.validation)
    splits = Splits.from_dataset(data, config.train_eval_examples)
    strategy = make_strategy("default")
    with strategy.scope():
        model = config.masked_model(data.input_shape, data.num_classes)
    trainer = LoopTrainer(model, config, strategy, splits)
    batches = pipeline.train_batches(*splits.train_tensors(), config.batch_size, config.seed,
                                     stats=splits.stats)
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    trainer._train_fn(iterator, tf.constant(100))  # trace
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.calls):
        float(trainer._train_fn(iterator, tf.constant(100))[0])
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    pools = " ".join(f"{k}={os.environ.get(k, 'unset')}"
                     for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"))
    print(f"{args.preset} ({pools}): {100 * args.calls / wall:.1f} steps/s, "
          f"{cpu / wall:.2f} CPU s per wall s, {args.calls} calls of 100 steps")


if __name__ == "__main__":
    main()
