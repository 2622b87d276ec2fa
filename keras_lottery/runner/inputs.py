"""A user's data, as the search trains and evaluates on it.

Training data becomes an endless stream of batches that can start at any
global step: a branch that rewinds to step k replays the stream from step
k, and a resumed branch continues where it stopped. Accepted forms:

- NumPy `(x, y)` (x and y may be lists or dicts of arrays, for models with
  several inputs or outputs) with `batch_size`: step s belongs to epoch
  `s // (n // batch_size)`, whose order is a permutation keyed by (seed,
  epoch), so the stream is a pure function of the step and resuming is
  O(1); the last `n % batch_size` examples of each epoch are dropped.
- a `tf.data.Dataset` of `(inputs, targets)` batches: repeated, and from
  step s on by skipping s batches. Its order must be the same each time it
  is iterated (shuffle with a seed) for a resumed run to match an
  uninterrupted one.
- a `keras.utils.PyDataset`: batch `s % len(dataset)`.
- a function returning a fresh iterable of batches (a Python generator
  function): its passes one after another, from step s on by skipping s
  batches. Each call must yield the same batches in the same order.
- a `torch.utils.data.DataLoader`: epoch e is one pass over it, from step
  s on by skipping into its epoch. A shuffling loader needs a
  `generator=torch.Generator()`, which the search reseeds from (seed,
  epoch) before each pass, so each epoch's order is a function of the step.

Evaluation data is NumPy `(x, y)`, a finite `tf.data.Dataset`, a
`PyDataset`, a generator function or a `DataLoader`, evaluated whole.
All of them but `tf.data` work on every Keras backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np

from keras_lottery.runner.config import check_integer
from keras_lottery.runner.split_eval import evaluate_tensors

_ACCEPTED = ("a tf.data.Dataset of (inputs, targets) batches, a keras.utils.PyDataset, "
             "a torch.utils.data.DataLoader, a function returning a generator of batches, "
             "or a NumPy (x, y) pair")


def _is_tf_dataset(value: Any) -> bool:
    module = type(value).__module__
    return module.startswith("tensorflow") and hasattr(value, "element_spec")


def _is_dataloader(value: Any) -> bool:
    return type(value).__module__.startswith("torch.utils.data") and hasattr(value, "batch_sampler")


def _is_generator_function(value: Any) -> bool:
    return callable(value) and not isinstance(value, (keras.Model, keras.utils.PyDataset))


def _refuse_iterator(value: Any, what: str) -> None:
    """A generator object (or other one-pass iterator) cannot be replayed."""
    if hasattr(value, "__next__") and not _is_tf_dataset(value):
        raise ValueError(
            f"{what} is a one-pass iterator ({type(value).__name__}); the search replays "
            "the data (every round, and on resume), so pass the function that makes it "
            "(e.g. `make_batches`, not `make_batches()`)."
        )


def _as_tuple(batch: Any) -> Any:
    """Keras takes a batch as a tuple; DataLoaders collate pairs into lists."""
    return tuple(batch) if isinstance(batch, list) else batch


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) in (2, 3) and not _is_tf_dataset(value)


def _first_array(structure: Any) -> np.ndarray:
    return keras.tree.flatten(structure)[0]


def _length(structure: Any, what: str) -> int:
    """The number of examples of NumPy data, checked: every array has it,
    and none is a Python scalar (the items of a Python list, which Keras's
    tree reads as one model input per item)."""
    arrays = keras.tree.flatten(structure)
    if any(np.ndim(a) == 0 for a in arrays):
        raise ValueError(
            f"{what} holds Python scalars where arrays of examples belong: a Python list is "
            "read as one model input per item. Pass NumPy arrays, e.g. (np.asarray(x), "
            "np.asarray(y)), or a list or dict of arrays, one per model input. Received: "
            f"{len(arrays)} values, {sum(np.ndim(a) == 0 for a in arrays)} of them scalars"
        )
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(
            f"All arrays of {what} must have the same number of examples. "
            f"Received lengths: {sorted(lengths)}"
        )
    return lengths.pop()


def _take(structure: Any, index: np.ndarray) -> Any:
    return keras.tree.map_structure(lambda a: a[index], structure)


@dataclasses.dataclass(frozen=True)
class TrainData:
    """Training data that streams from any global step.

    Use `TrainData.of(train, batch_size, seed)`.
    """

    source: Any
    kind: str  # "arrays", "tf.data", "pydataset", "generator" or "dataloader"
    batch_size: int | None
    seed: int
    x_dtypes: Any = dataclasses.field(default=None, compare=False, repr=False)
    _tensors: Any = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, train: Any, batch_size: int | None, seed: int) -> TrainData:
        """Wraps the user's training data.

        Args:
            train: NumPy `(x, y)` or `(x, y, sample_weight)`, a
                `tf.data.Dataset` of batches, a `keras.utils.PyDataset`, a
                function returning a generator of batches, or a
                `torch.utils.data.DataLoader`.
            batch_size: batch size for NumPy input (ignored otherwise).
            seed: seed of the NumPy order.

        Returns:
            A `TrainData`.

        Raises:
            ValueError: for any other input, or NumPy input without a
                usable `batch_size`.
        """
        if _is_tf_dataset(train):
            return cls(train, "tf.data", None, seed)
        if isinstance(train, keras.utils.PyDataset):
            return cls(train, "pydataset", None, seed)
        if _is_dataloader(train):
            _check_dataloader(train)
            return cls(train, "dataloader", None, seed)
        _refuse_iterator(train, "The training data")
        if _is_generator_function(train):
            return cls(train, "generator", None, seed)
        if _is_pair(train):
            arrays = tuple(keras.tree.map_structure(np.asarray, part) for part in train)
            n = _length(arrays, "the training data")
            if n == 0:
                raise ValueError("The training data is empty (0 examples).")
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
                raise ValueError(
                    f"NumPy training data needs batch_size, an integer in [1, {n}] (the "
                    f"number of training examples). Received: batch_size={batch_size!r}"
                )
            return cls(arrays, "arrays", batch_size, seed)
        raise ValueError(f"The training data must be {_ACCEPTED}. Received: {_describe(train)}")

    def stream(self, start: int) -> Any:
        """The endless stream of batches from global step `start` on.

        Returns:
            An iterator (NumPy input, PyDataset) or a `tf.data.Dataset` that
            `model.fit` consumes with `steps_per_epoch`.
        """
        if self.kind == "tf.data":
            return self.source.repeat().skip(start)
        if self.kind == "pydataset":
            return _pydataset_stream(self.source, start)
        if self.kind == "generator":
            return _generator_stream(self.source, start)
        if self.kind == "dataloader":
            return _dataloader_stream(self.source, self.seed, start)
        if keras.backend.backend() == "tensorflow":
            return _tf_array_stream(_tensors_of(self), self.batch_size, self.seed, start)
        return _array_stream(self.source, self.batch_size, self.seed, start)

    def batches(self, n: int) -> list[tuple[Any, Any]]:
        """The first `n` training batches as `(x, y)` pairs (what pruners
        that score by gradients read)."""
        return [tuple(_as_tuple(batch))[:2]
                for batch in itertools.islice(iter(self.stream(0)), n)]

    def fingerprint(self) -> str:
        """A short hash of what the data is (NumPy: the bytes; else its spec)."""
        return _fingerprint(self.source, self.kind)


def host_tensor(array: np.ndarray, dtype: Any = None) -> Any:
    """A TensorFlow tensor of a NumPy array, sharing its memory where it can.

    `tf.constant` holds about twice the array's size (a copy and a
    transient). An aligned, C-contiguous numeric array (`host_arrays.aligned`)
    becomes a tensor over the same memory through DLPack, no copy; another
    numeric array is first copied once into an aligned one, in `dtype`
    when given. Other arrays (strings, objects) go through `tf.constant`.
    The tensor reads the array: do not change the array while the tensor
    is in use.

    Args:
        array: the array.
        dtype: the dtype of the copy, if one is needed (default: the
            array's).

    Returns:
        A `tf.Tensor`.

    Example:
    >>> host_tensor(np.arange(3, dtype=np.float32)).numpy().tolist()  # doctest: +SKIP
    [0.0, 1.0, 2.0]
    """
    import tensorflow as tf

    from keras_lottery.runner.host_arrays import aligned

    array = np.asarray(array)
    if array.dtype.kind not in "biuf" or array.ndim == 0 or array.size == 0:
        return tf.constant(array)
    array = aligned(array, dtype)
    try:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    except Exception:  # noqa: BLE001 - a dtype or build without DLPack support
        return tf.constant(array)


def narrowed_inputs(model: keras.Model, x: Any) -> Any:
    """For each array of the inputs `x`, the float dtype the model converts
    it to at every batch when that is narrower than the array's, else None.

    A functional or Sequential model converts each input to its `Input`'s
    dtype before anything else (float64 NumPy images to float32, say), so
    converting the arrays once gives the model the same values. A model
    without known inputs (subclassed) gets no conversion.

    Args:
        model: the model.
        x: the inputs: an array, a list or tuple of arrays in the order of
            `model.inputs`, or a dict keyed by input names.

    Returns:
        The structure of `x` with a dtype or None per array, or None when
        nothing is converted.

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> narrowed_inputs(model, np.zeros((4, 2)))
    'float32'
    """
    try:
        inputs = list(model.inputs or ())
    except (AttributeError, ValueError):  # a subclassed model has none
        return None
    if isinstance(x, dict):
        by_name = {tensor.name: tensor for tensor in inputs}
        if not set(x) <= set(by_name):
            return None
        dtypes = {key: _narrowed(array, by_name[key].dtype) for key, array in x.items()}
        return dtypes if any(dtypes.values()) else None
    arrays = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(arrays) != len(inputs):
        return None
    dtypes = [_narrowed(array, tensor.dtype) for array, tensor in zip(arrays, inputs)]
    if not any(dtypes):
        return None
    return dtypes[0] if not isinstance(x, (list, tuple)) else type(x)(dtypes)


def _narrowed(array: Any, dtype: Any) -> str | None:
    array_dtype = getattr(array, "dtype", None)
    if array_dtype is None or np.dtype(array_dtype).kind != "f":
        return None
    target = keras.backend.standardize_dtype(dtype)
    try:
        target_dtype = np.dtype(target)
    except TypeError:  # bfloat16 and others NumPy does not know
        return None
    if target_dtype.kind != "f" or target_dtype.itemsize >= np.dtype(array_dtype).itemsize:
        return None
    return target


def _host_tensors(source: tuple, x_dtypes: Any) -> Any:
    """The arrays `(x, y[, sample_weight])` as tensors (`host_tensor`),
    x's copies (if any) in `x_dtypes`."""
    import tensorflow as tf

    arrays = keras.tree.map_structure(np.asarray, keras.tree.lists_to_tuples(source))
    x, *rest = arrays
    if x_dtypes is None:
        x = tf.nest.map_structure(host_tensor, x)
    else:
        x = tf.nest.map_structure(host_tensor, x, keras.tree.lists_to_tuples(x_dtypes))
    return (x, *tf.nest.map_structure(host_tensor, tuple(rest)))


def _tensors_of(data: TrainData | EvalData) -> tuple:
    """The NumPy arrays of `data` as TensorFlow tensors (`_host_tensors`),
    made once and kept on it for every branch's stream or evaluation."""
    if data._tensors is None:
        object.__setattr__(data, "_tensors", _host_tensors(data.source, data.x_dtypes))
    return data._tensors


def _converted_inputs(source: tuple, x_dtypes: Any) -> tuple:
    """`(x, y[, sample_weight])` with x's arrays in `x_dtypes` (NumPy)."""
    if x_dtypes is None:
        return source
    x, *rest = source
    x = keras.tree.map_structure(
        lambda array, dtype: array if dtype is None else np.asarray(array).astype(dtype),
        keras.tree.lists_to_tuples(x), keras.tree.lists_to_tuples(x_dtypes))
    return (x, *rest)


def _array_stream(arrays: tuple, batch_size: int, seed: int, start: int) -> Iterator[tuple]:
    n = _length(arrays, "the training data")
    for batches in _epoch_orders(n, batch_size, seed, start):
        for index in batches:
            yield tuple(_take(part, index) for part in arrays)


def _epoch_orders(n: int, batch_size: int, seed: int, start: int) -> Iterator[np.ndarray]:
    """Each epoch's batches of indices, `(batches, batch_size)`, from step
    `start` on (its first epoch without the batches before `start`)."""
    per_epoch = n // batch_size
    epoch, position = divmod(start, per_epoch)
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(n)
        yield order[: per_epoch * batch_size].reshape(per_epoch, batch_size)[position:]
        epoch, position = epoch + 1, 0


def _tf_array_stream(tensors: Any, batch_size: int, seed: int, start: int) -> Any:
    """The batches of `_array_stream`, gathered inside a `tf.data` pipeline.

    Python only draws each epoch's permutation (one call per epoch); the
    arrays live in TensorFlow (`tensors`, the NumPy arrays converted) and
    each gather takes several batches at once (`_batches_per_gather`;
    `model.fit` ran 1,000 steps in 0.91x the time of a gather per batch,
    docs/speed.md, "Eighth round").
    """
    import tensorflow as tf

    n = int(tf.nest.flatten(tensors)[0].shape[0])
    indices = tf.data.Dataset.from_generator(
        lambda: _epoch_orders(n, batch_size, seed, start),
        output_signature=tf.TensorSpec((None, batch_size), tf.int64),
    ).unbatch().batch(_batches_per_gather(tensors, batch_size))
    gathered = indices.map(lambda index: tf.nest.map_structure(lambda t: tf.gather(t, index), tensors),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return without_autotuning(gathered.unbatch().prefetch(tf.data.AUTOTUNE))


# The most bytes one gather of `_tf_array_stream` copies (a few batches of
# small examples; one batch where a batch alone is larger), and the most
# batches (strings count 0 bytes; tiny examples would wait for many epochs'
# orders before the first batch).
_GATHER_BYTES = 4 * 2**20
_GATHER_BATCHES = 64


def _batches_per_gather(tensors: Any, batch_size: int) -> int:
    """How many batches one gather takes: as many as fit `_GATHER_BYTES`,
    at least one and at most `_GATHER_BATCHES`."""
    import tensorflow as tf

    per_example = sum(t.dtype.size * t.shape[1:].num_elements() for t in tf.nest.flatten(tensors))
    return min(_GATHER_BATCHES, max(1, _GATHER_BYTES // max(1, per_example * batch_size)))


def without_autotuning(dataset: Any) -> Any:
    """`dataset` with tf.data's autotuning off: its `AUTOTUNE` parallelism
    and prefetch buffers take tf.data's fixed defaults, and its iterators
    start no tuning thread. Dropping an autotuned iterator waits for that
    thread's current sleep, which grows with the iterator's age: 2-10 s
    stalls, at random, at the end of a branch or wherever Python's garbage
    collector happens to free a Keras epoch iterator (TensorFlow 2.21;
    docs/speed.md, "Eighth round"). The batches are the same either way.

    Args:
        dataset: a `tf.data.Dataset` the search builds.

    Returns:
        The same pipeline with the option set.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _pydataset_stream(dataset: keras.utils.PyDataset, start: int) -> Iterator[Any]:
    length = len(dataset)
    if not length:
        raise ValueError("The training PyDataset is empty (len(dataset) == 0).")
    step = start
    while True:
        yield dataset[step % length]
        step += 1


def _generator_stream(make: Any, start: int) -> Iterator[Any]:
    skip = start
    while True:
        empty = True
        for batch in make():
            empty = False
            if skip:
                skip -= 1
                continue
            yield _as_tuple(batch)
        if empty:
            raise ValueError(f"The training generator function {_name(make)} yielded no batch.")


def _check_dataloader(loader: Any) -> None:
    import torch.utils.data

    try:
        length = len(loader)
    except TypeError:  # an IterableDataset without __len__
        raise ValueError(
            "A torch DataLoader over an IterableDataset has no length, so a step cannot be "
            "placed in an epoch: use a map-style Dataset, or pass a function returning a "
            "generator of batches. Received: a DataLoader over "
            f"{type(loader.dataset).__name__}"
        ) from None
    if not length:
        raise ValueError("The training DataLoader is empty (len(loader) == 0).")
    if isinstance(loader.sampler, torch.utils.data.RandomSampler) and loader.generator is None:
        raise ValueError(
            "A shuffling torch DataLoader needs a generator the search can seed, so that "
            "every round and a resumed run see the same order: DataLoader(..., shuffle=True, "
            "generator=torch.Generator()). Received: shuffle=True and generator=None"
        )


def _dataloader_stream(loader: Any, seed: int, start: int) -> Iterator[Any]:
    length = len(loader)
    epoch, skip = divmod(start, length)
    while True:
        if loader.generator is not None:
            loader.generator.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
        for batch in loader:
            if skip:
                skip -= 1
                continue
            yield _as_tuple(batch)
        epoch += 1


def _name(value: Any) -> str:
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}"


@dataclasses.dataclass(frozen=True)
class EvalData:
    """One evaluation split, evaluated whole with `model.evaluate`."""

    source: Any
    kind: str
    x_dtypes: Any = dataclasses.field(default=None, compare=False, repr=False)
    _tensors: Any = dataclasses.field(default=None, compare=False, repr=False)
    _batches: Any = dataclasses.field(default=None, compare=False, repr=False)
    _converted: Any = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, data: Any, what: str) -> EvalData:
        """Wraps validation or test data (same forms as training data)."""
        if _is_tf_dataset(data):
            return cls(data, "tf.data")
        if isinstance(data, keras.utils.PyDataset):
            return cls(data, "pydataset")
        if _is_dataloader(data):
            return cls(data, "dataloader")
        _refuse_iterator(data, what)
        if _is_generator_function(data):
            return cls(data, "generator")
        if _is_pair(data):
            arrays = tuple(keras.tree.map_structure(np.asarray, part) for part in data)
            if _length(arrays, what) == 0:
                raise ValueError(f"{what} is empty (0 examples): pass examples to evaluate "
                                 "on, or leave it out (None).")
            return cls(arrays, "arrays")
        raise ValueError(f"{what} must be {_ACCEPTED}. Received: {_describe(data)}")

    def evaluate(self, model: keras.Model, batch_size: int) -> dict[str, float]:
        """`model.evaluate` on the whole split, as a dict of floats (NumPy
        arrays on TensorFlow: the same values in one traced call,
        `split_eval.evaluate_tensors`)."""
        if self.kind == "arrays" and keras.backend.backend() == "tensorflow":
            logs = evaluate_tensors(model, _tensors_of(self), batch_size,
                                    lambda: self._tf_batches(batch_size))
        elif self.kind == "arrays":
            x, y, *weights = self._arrays()
            logs = model.evaluate(x, y, sample_weight=weights[0] if weights else None,
                                  batch_size=batch_size, verbose=0, return_dict=True)
        elif self.kind in ("generator", "dataloader"):
            batches = self.source() if self.kind == "generator" else self.source
            with warnings.catch_warnings():  # Keras 3.15 warns when a finite generator ends
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                logs = model.evaluate((_as_tuple(b) for b in batches), verbose=0, return_dict=True)
        else:
            logs = model.evaluate(self.source, verbose=0, return_dict=True)
        return {k: float(keras.ops.convert_to_numpy(v)) for k, v in logs.items()}

    def fingerprint(self) -> str:
        return _fingerprint(self.source, self.kind)

    def _tf_batches(self, batch_size: int) -> Any:
        """The arrays as a `tf.data.Dataset`, built once per batch size:
        `model.evaluate` on arrays would copy them into a new dataset at
        every evaluation."""
        if self._batches is None or self._batches[0] != batch_size:
            import tensorflow as tf

            batches = tf.data.Dataset.from_tensor_slices(_tensors_of(self)).batch(batch_size)
            batches = without_autotuning(batches.prefetch(tf.data.AUTOTUNE))
            object.__setattr__(self, "_batches", (batch_size, batches))
        return self._batches[1]

    def _arrays(self) -> tuple:
        """The NumPy arrays, inputs in `x_dtypes` (converted once: Keras's
        `model.evaluate` would convert them whole at every evaluation)."""
        if self._converted is None:
            object.__setattr__(self, "_converted", _converted_inputs(self.source, self.x_dtypes))
        return self._converted


def _fingerprint(source: Any, kind: str) -> str:
    digest = hashlib.sha256(kind.encode())
    if kind == "arrays":
        for array in keras.tree.flatten(source):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.data)  # the bytes, without a copy
    elif kind == "tf.data":
        digest.update(repr(source.element_spec).encode())
        digest.update(str(int(source.cardinality())).encode())
    elif kind == "generator":
        digest.update(_name(source).encode())
    elif kind == "dataloader":
        digest.update(f"{_name(type(source.dataset))}:{source.batch_size}:"
                      f"{type(source.sampler).__name__}".encode())
        with contextlib.suppress(TypeError):  # an IterableDataset has no length
            digest.update(f":{len(source.dataset)}:{len(source)}".encode())
    else:
        digest.update(f"{type(source).__module__}.{type(source).__qualname__}:{len(source)}".encode())
    return digest.hexdigest()[:12]


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"an object of type {type(value).__name__}"


@dataclasses.dataclass(frozen=True)
class SearchData:
    """The training stream and the evaluation splits of a search.

    Attributes:
        train: the training data.
        evals: split name (`"val"`, `"test"`) -> evaluation data.
        eval_batch_size: batch size of NumPy evaluation.
    """

    train: TrainData
    evals: dict[str, EvalData]
    eval_batch_size: int
    _fingerprint: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, train: Any, validation_data: Any = None, test_data: Any = None,
           batch_size: int | None = 32, seed: int = 0,
           eval_batch_size: int | None = None) -> SearchData:
        """Wraps a user's training, validation and test data.

        Args:
            train: the training data (see the module docstring).
            validation_data: evaluated every `eval_every` steps as `val_*`.
            test_data: evaluated alongside as `test_*`.
            batch_size: batch size of NumPy training input.
            seed: seed of the NumPy training order.
            eval_batch_size: batch size of NumPy evaluation input; None:
                `batch_size`, at least 256.

        Returns:
            A `SearchData`.
        """
        evals = {}
        if validation_data is not None:
            evals["val"] = EvalData.of(validation_data, "validation_data")
        if test_data is not None:
            evals["test"] = EvalData.of(test_data, "test_data")
        if eval_batch_size is not None:
            check_integer("eval_batch_size", eval_batch_size, minimum=1)
        return cls(TrainData.of(train, batch_size, seed), evals,
                   eval_batch_size or max(256, batch_size or 0))

    def fingerprint(self) -> str:
        """A short hash of all splits (part of the run's identity),
        computed once."""
        if self._fingerprint is None:
            parts = [self.train.fingerprint()] + [f"{k}={v.fingerprint()}"
                                                  for k, v in sorted(self.evals.items())]
            object.__setattr__(self, "_fingerprint",
                               hashlib.sha256("|".join(parts).encode()).hexdigest()[:12])
        return self._fingerprint

    def for_model(self, model: keras.Model) -> SearchData:
        """The same data, its NumPy inputs to be converted once to the
        narrower float dtype the model would convert every batch to
        (`narrowed_inputs`: float64 images for a float32 model), when the
        search has to copy them anyway or Keras would convert them at
        every call. The values the model sees are the same; the
        fingerprint is the original data's.

        Args:
            model: the model the data is trained and evaluated on.

        Returns:
            A `SearchData`.
        """
        def converted(data):
            if data.kind != "arrays":
                return data
            return dataclasses.replace(data, x_dtypes=narrowed_inputs(model, data.source[0]))

        return dataclasses.replace(
            self, train=converted(self.train),
            evals={name: converted(data) for name, data in self.evals.items()},
            _fingerprint=self.fingerprint())

    def evaluate(self, model: keras.Model,
                 names: Sequence[str] | None = None) -> dict[str, float]:
        """Every split's (or the named splits') compiled metrics, keyed
        `<split>_<metric>`."""
        record = {}
        for split, data in self.evals.items():
            if names is not None and split not in names:
                continue
            record.update({f"{split}_{k}": v
                           for k, v in data.evaluate(model, self.eval_batch_size).items()})
        return record
