"""The README quickstart: three rounds of prune-and-rewind in plain model.fit."""

import keras

import keras_lottery as kl

data = kl.data.load("fashion_mnist")                  # real data, offline via the Debian package
x, y = data.x_train / 255.0, data.y_train
base = kl.models.lenet300(data.input_shape, 10, seed=0)
model = kl.prunable(base)                            # a mask per Dense kernel, in place (model is base)
rewind = kl.RewindCallback(rewind_step=0)            # snapshot θ0 when training begins
for round_ in range(3):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=60, epochs=1, callbacks=[rewind], verbose=0)
    kl.prune_by_magnitude(model, fraction=0.2, scope="layerwise", rates={"output": 0.1})
    rewind.rewind(model)                             # survivors back to θ0, masks kept
    print(f"round {round_}: {100 * (1 - kl.sparsity(model)):.1f}% of weights remaining")
print(kl.save_ticket(model, "ticket.keras"))         # stripped model, dense vs zipped size
