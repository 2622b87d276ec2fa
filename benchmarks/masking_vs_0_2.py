"""Training-step cost of 0.3's in-place masks against 0.2's `MaskedLayer`.

Three builds of one model and seed, compiled alike (Adam): plain Keras,
0.2's wrapper (its `masked_layer.py` read from git history at commit
c807a66, with the two compat helpers it used, so nothing of 0.2 is kept in
the package) and 0.3's `prunable()`, both masked models at 80% sparsity.
Each measurement is one `model.fit` of `steps` steps on one repeated random
batch; the three are interleaved and each masked model's ratio is
median(masked) / median(plain), CPU time beside wall time.

    python benchmarks/masking_vs_0_2.py --models lenet300 conv2 --repeats 15
"""

from __future__ import annotations

import common  # first: sets TF_CPP_MIN_LOG_LEVEL and sys.path

import subprocess
import types

import keras
import numpy as np

import keras_lottery as kl
from keras_lottery import compat
from masking_overhead import MODELS, batch_dataset, compiled, fit_steps

OLD_COMMIT = "c807a66"


def old_prunable():
    """0.2's `prunable`, from git history, on today's compat helpers."""
    source = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:keras_lottery/masked_layer.py"], check=True,
        capture_output=True, text=True, cwd=common.REPO).stdout
    old_compat = types.SimpleNamespace(
        sublayers=compat.sublayers, set_attribute_untracked=compat.set_attribute_untracked,
        is_functional_or_sequential=compat.is_functional_or_sequential,
        kernel_attribute=lambda layer, name: compat.storage_attribute(layer, getattr(layer, name)),
        replace_sublayer=None)
    module = types.ModuleType("masked_layer_0_2")
    source = source.replace("from keras_lottery import compat\n", "")
    source = source.replace('@keras.saving.register_keras_serializable(package="keras_lottery")\n',
                            "")
    module.compat = old_compat
    exec(compile(source, "masked_layer_0_2.py", "exec"), module.__dict__)  # noqa: S102
    return module.prunable, module.masked_layers


def three(name: str, seed: int = 0):
    build, shape, *_ = MODELS[name]
    prunable_0_2, masked_layers_0_2 = old_prunable()
    plain = build(shape, 10, seed=seed)
    old = prunable_0_2(build(shape, 10, seed=seed))
    rng = np.random.default_rng(0)
    for wrapper in masked_layers_0_2(old):  # 80% of each kernel's mask zeroed
        for mask in wrapper.masks:
            mask.assign((rng.random(tuple(mask.shape)) >= 0.8).astype("float32"))
    new = kl.prunable(build(shape, 10, seed=seed))
    kl.prune_randomly(new, 0.8, seed=0)
    return {"plain": compiled(plain, False), "0.2 MaskedLayer": compiled(old, False),
            "0.3 in place": compiled(new, False)}


def main(argv=None) -> None:
    p = common.parser(__doc__)
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["lenet300", "conv2"])
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    rows, results = [], []
    for name in args.models:
        _, shape, batch, steps, steps_quick = MODELS[name]
        steps = steps_quick if args.quick else steps
        models = three(name)
        data = batch_dataset(shape, batch, tokens=name == "bert")
        times = common.interleave({k: fit_steps(m, data, steps) for k, m in models.items()},
                                  repeats=args.repeats, warmup=1)
        for key in ("0.2 MaskedLayer", "0.3 in place"):
            ratios = {clock: common.ratio(times[clock], key, "plain") for clock in times}
            rows.append((name, key, steps, ratios["wall"]["ratio"], common.noise(ratios["wall"]),
                         ratios["cpu"]["ratio"], common.noise(ratios["cpu"])))
            results.append({"model": name, "masks": key, "steps": steps, **ratios})
        keras.backend.clear_session()
    table = common.markdown_table(
        ["model", "masks", "steps", "wall ratio", "wall paired min..max", "CPU ratio",
         "CPU paired min..max"], rows)
    notes = (f"Ratio = median(masked) / median(plain) over {args.repeats} interleaved `fit` "
             "calls of the three builds; the 0.2 wrapper is read from git history "
             f"({OLD_COMMIT}).")
    common.write_results(args.out, "masking_vs_0_2", args, results, table, notes)


if __name__ == "__main__":
    main()
