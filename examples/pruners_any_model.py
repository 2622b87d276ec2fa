"""Every pruner of the registry through `LotterySearch` on models nobody here wrote.

A smoke run of the API (one target, a few steps on scikit-learn's digits),
not a result: it shows which pruners reach the target on which models, and
which refuse to empty a kernel (layer collapse; `docs/pruning_methods.md`).

    python examples/pruners_any_model.py --scope global
    python examples/pruners_any_model.py --scope layerwise --models MobileNetV2 bert_classifier

The models are the test zoo's (`tests/test_any_model.py`): a functional graph
with keras.ops, a subclassed model with attention, an LSTM, keras-hub's
BertTextClassifier built from config, plus keras.applications.MobileNetV2.
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "tests"), os.path.join(HERE, "..", "tests", "backends")]

import keras  # noqa: E402

import keras_lottery as kl  # noqa: E402
import test_any_model as zoo  # noqa: E402

PRUNERS = ("snip", "grasp", "synflow", "random", "magnitude_init", "gradual", "set", "rigl")
MODELS = ("functional_ops", "subclassed_attention", "lstm", "bert_classifier", "MobileNetV2")
# Options for the few steps of a smoke run (their defaults act every 100 steps).
OPTIONS = {"gradual": {"frequency": 5, "end": 0.6}, "set": {"update_every": 5},
           "rigl": {"update_every": 5},
           "synflow": {"input_shape": [[65], [65], [65]]}}


def _model(kind):
    if kind == "MobileNetV2":
        return (lambda: keras.applications.MobileNetV2(
            weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None,
            alpha=0.35)), zoo._images
    build, inputs, _ = zoo.KINDS[kind]
    return build, inputs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--pruners", nargs="+", default=PRUNERS, choices=PRUNERS)
    parser.add_argument("--scope", default="global", choices=("global", "layerwise"))
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    logdir = tempfile.mkdtemp(prefix="pruners_any_model_")
    for kind in args.models:
        build, inputs = _model(kind)

        def builder(build=build):
            keras.utils.set_random_seed(0)
            return zoo._compiled(build())

        x = inputs()
        splits = [(zoo._take(x, part), zoo.Y[a:b])
                  for part, a, b in (("train", 0, 600), ("val", 600, 800), ("test", 800, 1000))]
        for pruner in args.pruners:
            options = dict(OPTIONS.get(pruner, {}))
            if pruner == "synflow" and kind != "bert_classifier":
                options = {}
            began = time.time()
            try:
                search = kl.LotterySearch(
                    builder, mode="gradual" if pruner in ("gradual", "set", "rigl") else "oneshot",
                    pruner=pruner, pruner_options=options, sparsities=(20,), scope=args.scope,
                    logdir=logdir, name=f"{kind}_{pruner}_{args.scope}", verbose=0)
                result = search.fit(*splits, steps=args.steps, eval_every=10, batch_size=32)
                kept = 1 - kl.sparsity(result.ticket(1))
                print(f"OK   {kind:22s} {pruner:15s} {kept:.2%} remaining "
                      f"({time.time() - began:.0f} s)", flush=True)
            except (ValueError, kl.BranchFailedError) as error:
                print(f"FAIL {kind:22s} {pruner:15s} {str(error)[:300]}", flush=True)


if __name__ == "__main__":
    main()
