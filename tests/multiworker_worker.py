"""One worker of the two-process MultiWorkerMirroredStrategy tests.

Run by tests/test_distributed.py with TF_CONFIG set:

    python multiworker_worker.py LOGDIR OUT_PREFIX STEPS

It records the labels of the first distributed batches it trains on
(to check data sharding), runs one short lottery round, and saves the masks
it ends with to OUT_PREFIX.masks.npz.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import keras_lottery as kl  # noqa: E402
from keras_lottery.runner.presets import pipeline  # noqa: E402
from keras_lottery.runner.distribute import make_strategy  # noqa: E402


def main(logdir: str, prefix: str, steps: int) -> None:
    config = kl.PresetConfig.from_preset(
        "lenet300", dataset="fashion_mnist", steps=steps, rounds=1, eval_every=50,
        train_eval_examples=0, checkpoint_every=50, strategy="multiworker",
        logdir=logdir, verbose=2,
    )
    data = kl.data.load("fashion_mnist")
    strategy = make_strategy("multiworker")
    batches = pipeline.train_batches(data.x_train, data.y_train, config.batch_size, config.seed)
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    labels = [np.concatenate([t.numpy() for t in strategy.experimental_local_results(next(iterator)[1])])
              for _ in range(3)]
    np.save(prefix + ".labels.npy", np.stack(labels))
    result = kl.find_ticket(config, data)
    np.savez(prefix + ".masks.npz", **result.masks)
    with open(prefix + ".threads", "w") as f:  # a thread leak would show here
        f.write(str(len(os.listdir(f"/proc/{os.getpid()}/task"))))
    print("worker done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
