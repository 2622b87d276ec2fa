# usage: KERAS_BACKEND=tensorflow python keras_fit_floor.py
# Plain Keras on the same training work as kl_search_jax.py, with no keras-lottery in the loop:
# 4 trainings of LeNet-300-100 from the same initial weights (fresh Adam 1.2e-3 each), 2000 steps
# of batch 60 on the same 55K Fashion-MNIST images, validation (5K) every 100 steps inside
# `model.fit`, test (10K) once at the end of each. No masks, no pruning, no run directory, no
# TensorBoard, and test evaluated once where the search evaluates it twice: less work than the search,
# so its time is a floor for any library that trains through `model.fit` (the wall time a Keras
# user pays for the trainings alone). float32 images (`x.astype("float32") / 255`), 100 steps per
# compiled call (Keras's `steps_per_execution`) and one compile for the four trainings (the
# optimizer's variables reset to their built values), as the search does. The loaders are
# keras-lottery's (`kl.data.load`: Debian's IDX files, the same splits). Keras shuffles the arrays
# with its own unseeded order, so the printed accuracies vary from run to run: the time is the result.
import os, time
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
t0 = time.perf_counter()
import keras, keras_lottery as kl

data = kl.data.load("fashion_mnist")
train, val, test = [(x.astype("float32") / 255, y) for x, y in [
    (data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)]]
model = kl.models.lenet300(data.input_shape, 10, seed=0)
initial = model.get_weights()
steps, every = int(os.environ.get("KL_STEPS", "2000")), 100
model.compile(keras.optimizers.Adam(1.2e-3),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
              steps_per_execution=every)
model.optimizer.build(model.trainable_variables)
fresh = [v.numpy() for v in model.optimizer.variables]  # a fresh Adam's state, restored per training
t1 = time.perf_counter()
for training in range(int(os.environ.get("KL_ROUNDS", "3")) + 1):
    model.set_weights(initial)
    for variable, value in zip(model.optimizer.variables, fresh):
        variable.assign(value)
    history = model.fit(*train, batch_size=60, epochs=steps // every, steps_per_epoch=every,
                        validation_data=val, verbose=0)
    logs = model.evaluate(*test, batch_size=1000, verbose=0, return_dict=True)
    print(f"training {training}: final val accuracy {history.history['val_accuracy'][-1]:.4f} "
          f"test accuracy {logs['accuracy']:.4f}")
print(f"KERAS_FIT_TIMING backend {keras.backend.backend()} import_and_data_s {t1 - t0:.2f} "
      f"trainings_s {time.perf_counter() - t1:.2f}")
