"""Image classification datasets for lottery-ticket experiments, as numpy arrays.

`load(name)` returns a `Dataset`: uint8 images `(N, H, W, C)` and int64
labels, split into train / validation / test as in Frankle & Carbin (2019):
55K/5K/10K for MNIST and Fashion-MNIST, 45K/5K/10K for CIFAR-10. The
validation examples are drawn from the official training set with a fixed
permutation (seed 0, independent of any run seed), so every run sees the
same split.

Where the data comes from, first hit wins:

1. `data_dir`, when given: MNIST-style IDX files (`train-images-idx3-ubyte`,
   `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
   `t10k-labels-idx1-ubyte`, each optionally `.gz`), or for CIFAR-10 the
   python (`cifar-10-batches-py/`) or binary (`cifar-10-batches-bin/`)
   batches, directly in `data_dir` or in `data_dir/<name>/`; the Keras cache
   layout (`mnist.npz`, `fashion-mnist/`,
   `cifar-10-batches-py-target/cifar-10-batches-py/`); and a
   tensorflow-datasets `data_dir` that already holds the prepared dataset.
2. System locations: `/usr/share/datasets/fashion-mnist/` (Debian package
   `dataset-fashion-mnist`), the Keras cache (`$KERAS_HOME` or
   `~/.keras`, `datasets/`), and the default tensorflow-datasets directory
   (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`) when already prepared.
3. A tensorflow-datasets download, tried only if the download host answers
   within a few seconds, so a machine without internet fails fast with a
   `DatasetNotFoundError` instead of hanging.

Everything is read with numpy (no per-example Python loops); importing this
module does not import TensorFlow or tensorflow-datasets.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_lottery.runner.host_arrays import aligned_take

SPLIT_SEED = 0  # seed of the fixed train/validation permutation
_NETWORK_TIMEOUT = 3.0  # seconds to wait for the download host
_TFDS_BATCH = 10_000  # examples per batch read from tensorflow-datasets


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset is in none of the places `load` looks."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split into train / validation / test numpy arrays.

    Attributes:
        name: canonical dataset name (`"mnist"`, `"fashion_mnist"`,
            `"cifar10"`).
        x_train, x_val, x_test: uint8 images of shape `(N, H, W, C)`.
        y_train, y_val, y_test: int64 labels in `[0, num_classes)`.
        num_classes: number of classes (after any `classes=` selection).
        source: where the data was read from (a path, or
            `"tensorflow-datasets (...)"`).
        classes: the original class id of each label `0..num_classes-1`.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    classes: tuple[int, ...] = ()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, `(H, W, C)`."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, "
            f"val={len(self.y_val)}, test={len(self.y_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"source={self.source!r})"
        )


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    shape: tuple[int, int, int]
    num_classes: int
    format: str  # "idx" or "cifar"
    dir_names: tuple[str, ...]  # subdirectories of a root that may hold it
    system_dirs: tuple[str, ...]  # absolute directories known to hold it
    download_url: str  # what tensorflow-datasets downloads (reachability)


_SPECS = {
    "mnist": _Spec(
        name="mnist",
        shape=(28, 28, 1),
        num_classes=10,
        format="idx",
        dir_names=("mnist", "MNIST"),
        system_dirs=(),
        download_url="https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion_mnist": _Spec(
        name="fashion_mnist",
        shape=(28, 28, 1),
        num_classes=10,
        format="idx",
        dir_names=("fashion_mnist", "fashion-mnist", "FashionMNIST"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        download_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    "cifar10": _Spec(
        name="cifar10",
        shape=(32, 32, 3),
        num_classes=10,
        format="cifar",
        dir_names=("cifar10", "cifar-10"),
        system_dirs=(),
        download_url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    ),
}
_ALIASES = {"fashion-mnist": "fashion_mnist", "cifar-10": "cifar10"}

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    validation: int = 5000,
    classes: Sequence[int] | None = None,
) -> Dataset:
    """Loads a dataset and splits it into train / validation / test.

    Args:
        name: `"mnist"`, `"fashion_mnist"` (or `"fashion-mnist"`) or
            `"cifar10"` (or `"cifar-10"`).
        data_dir: optional directory searched first: IDX files or CIFAR-10
            batches directly in it or in `data_dir/<name>/`, the Keras cache
            layout, or a prepared tensorflow-datasets directory. A
            tensorflow-datasets download, if one happens, goes there too.
        validation: number of training examples held out for validation, in
            `[0, training set size)`; 0 gives empty validation arrays. They
            are chosen by a fixed permutation (seed `SPLIT_SEED`), the same in
            every run. With `classes`, they are drawn from the training
            examples of those classes (the split is made after filtering), so
            the validation set still has `validation` examples.
        classes: optional original class ids to keep, in every split. They
            are relabelled `0..k-1` in the given order, and `num_classes`
            becomes `k`.

    Returns:
        A `Dataset`.

    Raises:
        ValueError: bad `name`, `validation` or `classes`, or a malformed
            data file (the message names the file).
        DatasetNotFoundError: the dataset is in none of the places looked
            at and cannot be downloaded; the message says where it looked and
            how to provide it.

    Example:
    >>> ds = load("fashion_mnist")  # doctest: +SKIP
    >>> ds.x_train.shape, ds.x_val.shape, ds.x_test.shape  # doctest: +SKIP
    ((55000, 28, 28, 1), (5000, 28, 28, 1), (10000, 28, 28, 1))
    >>> load("mnist", classes=(0, 1, 2, 3, 4)).num_classes  # doctest: +SKIP
    5
    """
    spec = _get_spec(name)
    if isinstance(validation, bool) or not isinstance(validation, (int, np.integer)):
        raise ValueError(
            "validation must be a non-negative integer (a number of examples). "
            f"Received: validation={validation!r}"
        )
    if validation < 0:
        raise ValueError(
            "validation must be a non-negative integer (a number of examples). "
            f"Received: validation={validation}"
        )
    keep = _check_classes(classes, spec.num_classes)

    (x_train, y_train, x_test, y_test), source = _find(spec, data_dir)
    _check_arrays(spec, source, x_train, y_train, x_test, y_test)
    y_train = y_train.astype(np.int64, copy=False)
    y_test = y_test.astype(np.int64, copy=False)

    if keep is not None:
        x_train, y_train = _select(x_train, y_train, keep)
        x_test, y_test = _select(x_test, y_test, keep)
    n = len(y_train)
    if validation >= n:
        what = f"{spec.name} with classes={keep}" if keep is not None else spec.name
        raise ValueError(
            f"validation must be in [0, {n}): {what} has {n} training examples. "
            f"Received: validation={validation}"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    val_idx = np.sort(order[:validation])
    train_idx = np.sort(order[validation:])
    return Dataset(
        name=spec.name,
        x_train=aligned_take(x_train, train_idx),
        y_train=y_train[train_idx],
        x_val=aligned_take(x_train, val_idx),
        y_val=y_train[val_idx],
        x_test=aligned_take(x_test, np.arange(len(x_test))),
        y_test=np.array(y_test),
        num_classes=spec.num_classes if keep is None else len(keep),
        source=source,
        classes=tuple(range(spec.num_classes)) if keep is None else keep,
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST format), optionally gzip-compressed.

    Args:
        path: the file; gzip compression is detected from its content.

    Returns:
        The array, with the shape and dtype its header declares (native byte
        order).

    Raises:
        ValueError: the file is not IDX, is truncated or has trailing bytes;
            the message names the file.

    Example:
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
    >>> _ = open(p, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 3]))
    >>> read_idx(p).tolist()
    [7, 3]
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise ValueError(
            f"{path} is not an IDX file: it starts with bytes {raw[:4].hex(' ')!r}, "
            "expected the magic number 00 00 <type: 08, 09, 0b, 0c, 0d or 0e> <ndim>."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path} is truncated: its {ndim}-dimensional IDX header needs "
            f"{header} bytes, the file has {len(raw)}."
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(dtypes[raw[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        problem = "is truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(
            f"{path} {problem}: its header declares shape {dims} of {dtype.name} "
            f"({expected} bytes with the header), the file has {len(raw)} bytes."
        )
    array = np.frombuffer(raw, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


# --------------------------------------------------------------------------
# Where to look.


def _get_spec(name: str) -> _Spec:
    key = _ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in _SPECS:
        accepted = ", ".join(repr(n) for n in [*_SPECS, *_ALIASES])
        raise ValueError(
            f"name must be one of {accepted}. Received: name={name!r}"
        )
    return _SPECS[key]


def _check_classes(classes: Sequence[int] | None, num_classes: int) -> tuple[int, ...] | None:
    if classes is None:
        return None
    accepted = (
        f"a non-empty sequence of distinct class ids in [0, {num_classes})"
    )
    try:
        keep = tuple(classes)
    except TypeError:
        keep = None
    if (
        not keep
        or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in keep)
        or any(not 0 <= c < num_classes for c in keep)
        or len(set(keep)) != len(keep)
    ):
        raise ValueError(f"classes must be {accepted}. Received: classes={classes!r}")
    return tuple(int(c) for c in keep)


def _keras_datasets_dir() -> Path:
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _tfds_default_dir() -> Path:
    return Path(
        os.environ.get("TFDS_DATA_DIR")
        or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
    )


def _system_roots(spec: _Spec) -> list[tuple[Path, bool]]:
    """System directories to search: (directory, holds the files directly)."""
    return [
        *((Path(d), True) for d in spec.system_dirs),
        (_keras_datasets_dir(), False),
    ]


def _system_tfds_dirs() -> list[Path]:
    """System tensorflow-datasets directories that may hold it prepared."""
    return [_tfds_default_dir()]


def _candidate_dirs(spec: _Spec, root: Path, direct: bool) -> list[Path]:
    dirs = [root] if direct else []
    dirs += [root / d for d in spec.dir_names]
    if spec.format == "cifar":
        for base in dirs[:]:
            dirs += [
                base / "cifar-10-batches-py",
                base / "cifar-10-batches-bin",
                base / "cifar-10-batches-py-target" / "cifar-10-batches-py",
            ]
    return dirs


def _search(spec: _Spec, roots, tfds_dirs, looked: list[str]):
    """Returns ((x_train, y_train, x_test, y_test), source) or None."""
    for root, direct in roots:
        if not root.is_dir():
            looked.append(f"{root} (absent)")
            continue
        for d in _candidate_dirs(spec, root, direct):
            if d.is_dir():
                arrays = _read_dir(spec, d)
                if arrays is not None:
                    return arrays, str(d)
        if spec.name == "mnist" and (root / "mnist.npz").is_file():
            return _read_keras_npz(root / "mnist.npz"), str(root / "mnist.npz")
        subdirs = ", ".join(f"{d}/" for d in spec.dir_names)
        looked.append(
            f"{root} ({'in it or ' if direct else ''}in {subdirs}: no {spec.name} files)"
        )
    for root in tfds_dirs:
        prepared = sorted(root.glob(f"{spec.name}/*/dataset_info.json"))
        if prepared and not _tfds_installed():
            looked.append(f"{root / spec.name} (prepared for tensorflow-datasets, which needs "
                          f"{_TFDS_INSTALL})")
            continue
        if prepared:
            arrays = _load_tfds(spec, str(root), download=False)
            return arrays, f"tensorflow-datasets ({prepared[-1].parent})"
        looked.append(f"{root / spec.name} (tensorflow-datasets: not prepared)")
    return None


def _find(spec: _Spec, data_dir) -> tuple[tuple[np.ndarray, ...], str]:
    """Returns the raw arrays (x_train, y_train, x_test, y_test) and source."""
    looked: list[str] = []
    user_dir = None if data_dir is None else Path(os.fspath(data_dir)).expanduser()
    user = [] if user_dir is None else [user_dir]
    found = _search(spec, [(d, True) for d in user], user, looked) or _search(
        spec, _system_roots(spec), _system_tfds_dirs(), looked
    )
    if found is not None:
        return found

    if not _tfds_installed():
        looked.append(f"tensorflow-datasets download (tensorflow-datasets or TensorFlow is "
                      f"not installed: {_TFDS_INSTALL})")
    elif not _reachable(spec.download_url):
        host = urllib.parse.urlsplit(spec.download_url).hostname
        looked.append(
            f"tensorflow-datasets download ({host} not reachable within "
            f"{_NETWORK_TIMEOUT:g} s: no internet?)"
        )
    else:
        where = str(user_dir) if user_dir is not None else None
        try:
            arrays = _load_tfds(spec, where, download=True)
        except Exception as err:  # noqa: BLE001 - reported with the other places
            looked.append(f"tensorflow-datasets download (failed: {err!r})")
            raise DatasetNotFoundError(_not_found_message(spec, looked)) from err
        return arrays, f"tensorflow-datasets ({where or _tfds_default_dir()})"
    raise DatasetNotFoundError(_not_found_message(spec, looked))


def _not_found_message(spec: _Spec, looked: list[str]) -> str:
    if spec.format == "idx":
        files = ", ".join(_IDX_FILES.values())
        what = f"the IDX files {files} (each optionally .gz)"
    else:
        what = (
            "the CIFAR-10 python batches (cifar-10-batches-py/: data_batch_1..5, "
            "test_batch) or binary batches (cifar-10-batches-bin/: "
            "data_batch_1..5.bin, test_batch.bin)"
        )
    apt = (
        " For fashion_mnist, `apt-get install dataset-fashion-mnist` puts them in "
        "/usr/share/datasets/fashion-mnist, where they are found without data_dir."
        if spec.name == "fashion_mnist"
        else ""
    )
    places = "\n".join(f"  - {p}" for p in looked) or "  (nowhere)"
    return (
        f"Could not find the {spec.name} dataset. Looked in:\n{places}\n"
        "Provide it in one of two ways:\n"
        f"  (a) put {what} in the data directory (`data_dir=` / `--data-dir`), "
        f"directly or in a {spec.name}/ subdirectory.{apt}\n"
        "  (b) on a machine with internet access, tensorflow-datasets downloads it "
        "automatically (into data_dir, or ~/tensorflow_datasets)."
    )


# --------------------------------------------------------------------------
# Readers.


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"Could not read {path}: {err}") from err
    return raw


def _find_file(directory: Path, base: str) -> Path | None:
    # Also the `train-images.idx3-ubyte` spelling some mirrors use.
    for stem in (base, base.replace("-idx", ".idx")):
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                return directory / name
    return None


def _read_dir(spec: _Spec, directory: Path) -> tuple[np.ndarray, ...] | None:
    if spec.format == "idx":
        paths = {k: _find_file(directory, v) for k, v in _IDX_FILES.items()}
        if any(p is None for p in paths.values()):
            return None
        arrays = {k: read_idx(p) for k, p in paths.items()}
        for k in ("x_train", "x_test"):
            if arrays[k].ndim == 3:
                arrays[k] = arrays[k][..., None]
        return tuple(arrays[k] for k in _IDX_FILES)
    if all((directory / f).is_file() for f in (*_CIFAR_TRAIN, _CIFAR_TEST)):
        x_train, y_train = zip(*(_read_cifar_pickle(directory / f) for f in _CIFAR_TRAIN))
        x_test, y_test = _read_cifar_pickle(directory / _CIFAR_TEST)
    elif all((directory / f"{f}.bin").is_file() for f in (*_CIFAR_TRAIN, _CIFAR_TEST)):
        x_train, y_train = zip(*(_read_cifar_bin(directory / f"{f}.bin") for f in _CIFAR_TRAIN))
        x_test, y_test = _read_cifar_bin(directory / f"{_CIFAR_TEST}.bin")
    else:
        return None
    return np.concatenate(x_train), np.concatenate(y_train), x_test, y_test


def _planar_to_hwc(flat: np.ndarray) -> np.ndarray:
    # CIFAR stores each image as 1024 red, 1024 green, 1024 blue bytes.
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_bytes(str(path))
    record = 1 + 3 * 32 * 32
    if not raw or len(raw) % record:
        raise ValueError(
            f"{path} is not a CIFAR-10 binary batch: its size ({len(raw)} bytes) is "
            f"not a positive multiple of {record} (1 label byte + 3072 pixel bytes)."
        )
    rows = np.frombuffer(raw, np.uint8).reshape(-1, record)
    return _planar_to_hwc(rows[:, 1:]), rows[:, 0].astype(np.int64)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches, refusing anything but numpy arrays."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 with protocol < 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, AttributeError, KeyError, TypeError,
            ValueError) as err:
        raise ValueError(
            f"{path} is not a CIFAR-10 python batch (a pickled dict with 'data' and "
            f"'labels'): {err!r}"
        ) from err
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(
            f"{path} is not a CIFAR-10 python batch: 'data' has shape {data.shape}, "
            f"expected (N, 3072) with N = {len(labels)} labels."
        )
    return _planar_to_hwc(data), labels


def _read_keras_npz(path: Path) -> tuple[np.ndarray, ...]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"Could not read {path} as a Keras mnist.npz: {err!r}") from err
    for i in (0, 2):
        if arrays[i].ndim == 3:
            arrays[i] = arrays[i][..., None]
    return tuple(arrays)


def _check_arrays(spec: _Spec, source: str, x_train, y_train, x_test, y_test) -> None:
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if (
            x.dtype != np.uint8
            or x.shape[1:] != spec.shape
            or y.shape != x.shape[:1]
            or y.dtype.kind not in "iu"
        ):
            raise ValueError(
                f"The {spec.name} {split} split from {source} has images {x.shape} "
                f"{x.dtype} and labels {y.shape} {y.dtype}; expected uint8 images "
                f"(N, {', '.join(map(str, spec.shape))}) and N integer labels."
            )
        if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
            raise ValueError(
                f"The {spec.name} {split} labels from {source} are in "
                f"[{y.min()}, {y.max()}]; expected [0, {spec.num_classes})."
            )


def _select(x: np.ndarray, y: np.ndarray, keep: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    relabel = np.full(max(keep) + 1, -1, np.int64)
    relabel[list(keep)] = np.arange(len(keep))
    index = np.flatnonzero(np.isin(y, keep))
    return x[index], relabel[y[index]]


# --------------------------------------------------------------------------
# tensorflow-datasets.


# tensorflow-datasets and TensorFlow come with this extra.
_TFDS_INSTALL = 'pip install "keras-lottery[tensorflow]"'


def _tfds_installed() -> bool:
    """Whether tensorflow-datasets and the TensorFlow it runs on are installed."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None
               for name in ("tensorflow_datasets", "tensorflow"))


def _reachable(url: str, timeout: float = _NETWORK_TIMEOUT) -> bool:
    """Whether a TCP connection to `url`'s host (or its proxy) opens in time.

    The probe runs in a daemon thread so a hanging DNS lookup cannot block
    for longer than `timeout` either.
    """
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _load_tfds(spec: _Spec, data_dir: str | None, download: bool) -> tuple[np.ndarray, ...]:
    import tensorflow_datasets as tfds

    # Fixed-size batches rather than `batch_size=-1`: that batches by the
    # split sizes recorded in the dataset info, and where those are unknown
    # (mocked data) TensorFlow 2.21 aborts the process on `batch(sys.maxsize)`.
    splits = tfds.load(
        spec.name,
        split=["train", "test"],
        as_supervised=True,
        batch_size=_TFDS_BATCH,
        data_dir=data_dir,
        download=download,
    )
    arrays = []
    for split in splits:
        batches = list(tfds.as_numpy(split))
        if not batches:
            arrays += [np.zeros((0, *spec.shape), np.uint8), np.zeros((0,), np.int64)]
            continue
        x, y = zip(*batches)
        arrays += [np.concatenate(x).astype(np.uint8, copy=False),
                   np.concatenate(y).astype(np.int64, copy=False)]
    return tuple(arrays)
