import os; os.environ["KERAS_BACKEND"] = "jax"          # or "torch", or "tensorflow"
import keras, keras_lottery as kl

data = kl.data.load("fashion_mnist")                    # real data, read without TensorFlow
def build():                                            # a compiled Keras model of your own
    model = kl.models.lenet300(data.input_shape, 10, seed=0)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model
splits = [(x / 255.0, y) for x, y in [(data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)]]
result = kl.LotterySearch(build, rounds=2).fit(*splits, steps=1000, eval_every=500, batch_size=60)
print(kl.sparsity(result.ticket(round=2)))              # 0.36: the round-2 ticket, 64% of weights left
