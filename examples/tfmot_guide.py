"""TFMOT's "Pruning in Keras" guide, run by TFMOT itself and by keras_lottery.tfmot.

The guide's code (tensorflow.org/model_optimization/guide/pruning/pruning_with_keras:
train a small convnet, prune it with PolynomialDecay 50% -> 80% for 2 epochs,
strip, compare zipped sizes) is `guide()` below, written once. It runs twice
on real Fashion-MNIST (Debian's dataset-fashion-mnist, 60,000 training
images, 10,000 test images): with `tensorflow_model_optimization` on
`tf_keras`, and with `keras_lottery.tfmot` on Keras 3 (the current
backend). Only the two imports differ. It prints both results side by side.

    python examples/tfmot_guide.py                 # the guide: 4 + 2 epochs
    python examples/tfmot_guide.py --epochs 1 --prune-epochs 1 --frameworks ours

Needs the [tfmot] extra for the TFMOT run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def get_gzipped_model_size(file: str) -> int:
    """The guide's measure: the size of the file zip-compressed."""
    _, zipped = tempfile.mkstemp(".zip")
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.write(file)
    return os.path.getsize(zipped)


def guide(tfmot, keras, data, epochs: int, prune_epochs: int,
          suffix: str = ".h5") -> tuple[dict, list]:
    """The guide's code; `tfmot` and `keras` are the only things that change.

    Returns the results and the stripped model's weights.
    """
    (train_images, train_labels), (test_images, test_labels) = data
    keras.utils.set_random_seed(0)

    # Define the model architecture.
    model = keras.Sequential([
        keras.layers.InputLayer(input_shape=(28, 28)),
        keras.layers.Reshape(target_shape=(28, 28, 1)),
        keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=epochs, validation_split=0.1, verbose=0)
    _, baseline_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    _, keras_file = tempfile.mkstemp(suffix)
    keras.models.save_model(model, keras_file, include_optimizer=False)

    # Fine-tune pre-trained model with pruning.
    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    batch_size = 128
    validation_split = 0.1
    num_images = train_images.shape[0] * (1 - validation_split)
    end_step = np.ceil(num_images / batch_size).astype(np.int32) * prune_epochs
    pruning_params = {
        "pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=end_step)
    }
    model_for_pruning = prune_low_magnitude(model, **pruning_params)
    model_for_pruning.compile(optimizer="adam",
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=["accuracy"])
    logdir = tempfile.mkdtemp()
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep(),
                 tfmot.sparsity.keras.PruningSummaries(log_dir=logdir)]
    started = time.process_time()
    model_for_pruning.fit(train_images, train_labels, batch_size=batch_size, epochs=prune_epochs,
                          validation_split=validation_split, callbacks=callbacks, verbose=0)
    prune_cpu = time.process_time() - started
    _, model_for_pruning_accuracy = model_for_pruning.evaluate(test_images, test_labels,
                                                               verbose=0)

    # Create 3x smaller models from pruning.
    model_for_export = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    _, pruned_keras_file = tempfile.mkstemp(suffix)
    keras.models.save_model(model_for_export, pruned_keras_file, include_optimizer=False)
    kernels = [layer.get_weights()[0] for layer in model_for_export.layers
               if layer.get_weights()]
    return {
        "baseline accuracy": baseline_model_accuracy,
        "pruned accuracy": model_for_pruning_accuracy,
        "final sparsity (kernels)": [round(float(np.mean(k == 0)), 4) for k in kernels],
        "baseline zipped bytes": get_gzipped_model_size(keras_file),
        "pruned zipped bytes": get_gzipped_model_size(pruned_keras_file),
        "pruning fit CPU s": round(prune_cpu, 1),
    }, [np.asarray(w) for w in model_for_export.get_weights()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="baseline epochs (guide: 4)")
    parser.add_argument("--prune-epochs", type=int, default=2, help="pruning epochs (guide: 2)")
    parser.add_argument("--frameworks", nargs="+", default=["tfmot", "ours"],
                        choices=["tfmot", "ours"])
    args = parser.parse_args()

    from keras_lottery.runner.presets import data as kl_data

    fashion = kl_data.load("fashion_mnist", validation=0)
    data = ((fashion.x_train[..., 0] / 255.0, fashion.y_train),
            (fashion.x_test[..., 0] / 255.0, fashion.y_test))
    results, weights = {}, {}
    for name in args.frameworks:
        if name == "tfmot":
            import tensorflow_model_optimization as tfmot  # noqa: I001
            import tf_keras as keras

            results["TFMOT 0.8 (tf_keras)"], weights[name] = guide(
                tfmot, keras, data, args.epochs, args.prune_epochs)
        else:
            import keras
            import keras_lottery.tfmot as tfmot

            label = f"keras_lottery.tfmot (Keras {keras.__version__}, {keras.backend.backend()})"
            results[label], weights[name] = guide(tfmot, keras, data, args.epochs,
                                                  args.prune_epochs)
    rows = list(next(iter(results.values())))
    print(f"Fashion-MNIST, baseline {args.epochs} epochs, pruning {args.prune_epochs} epochs "
          "(PolynomialDecay 0.5 -> 0.8)")
    print("| | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for row in rows:
        cells = [f"{r[row]:.4f}" if isinstance(r[row], float) and "accuracy" in row
                 else str(r[row]) for r in results.values()]
        print(f"| {row} | " + " | ".join(cells) + " |")
    if len(weights) == 2:
        pairs = list(zip(weights["tfmot"], weights["ours"]))
        same_zeros = all(np.array_equal(a == 0, b == 0) for a, b in pairs)
        print(f"stripped weights, TFMOT vs ours: largest difference "
              f"{max(float(np.abs(a - b).max()) for a, b in pairs):.3g}, "
              f"zeros at the same places: {same_zeros}")


if __name__ == "__main__":
    main()
