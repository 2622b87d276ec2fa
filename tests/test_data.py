"""Dataset loading: IDX and CIFAR readers, splits, classes, sources, errors."""

import gzip
import os
import pickle
import time

import numpy as np
import pytest

from keras_lottery.runner.presets import data

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


# --------------------------------------------------------------------------
# Helpers: tiny datasets written in the real on-disk formats.


def write_idx(path, array, gz=False):
    """Writes `array` as an IDX file (big-endian), gzip-compressed if `gz`."""
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    array = np.asarray(array)
    code = codes[array.dtype.kind + str(array.dtype.itemsize)]
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if gz:
        path = str(path) + ".gz"
        raw = gzip.compress(raw)
    with open(path, "wb") as f:
        f.write(raw)
    return path


def mnist_like(n_train=60, n_test=20):
    """Images whose first pixel is the example's index; labels index % 10."""
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    x_train[:, 0, 0] = np.arange(n_train)
    x_test[:, 0, 0] = np.arange(n_test)
    return x_train, np.arange(n_train) % 10, x_test, np.arange(n_test) % 10


def write_mnist_dir(directory, gz=False, **kwargs):
    os.makedirs(directory, exist_ok=True)
    x_train, y_train, x_test, y_test = arrays = mnist_like(**kwargs)
    write_idx(os.path.join(directory, "train-images-idx3-ubyte"), x_train, gz)
    write_idx(os.path.join(directory, "train-labels-idx1-ubyte"), y_train.astype(np.uint8), gz)
    write_idx(os.path.join(directory, "t10k-images-idx3-ubyte"), x_test, gz)
    write_idx(os.path.join(directory, "t10k-labels-idx1-ubyte"), y_test.astype(np.uint8), gz)
    return arrays


def cifar_batches(per_batch=20):
    """Six batches (5 train, 1 test) of channel-planar rows and labels."""
    rng = np.random.default_rng(2)
    return [
        (rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
         rng.integers(0, 10, per_batch).tolist())
        for _ in range(6)
    ]


CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar_py(directory, batches, protocol=2):
    os.makedirs(directory, exist_ok=True)
    for name, (rows, labels) in zip(CIFAR_NAMES, batches):
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                 b"filenames": [b"x.png"] * len(labels)}
        with open(os.path.join(directory, name), "wb") as f:
            pickle.dump(batch, f, protocol=protocol)


def write_cifar_bin(directory, batches):
    os.makedirs(directory, exist_ok=True)
    for name, (rows, labels) in zip(CIFAR_NAMES, batches):
        records = np.concatenate([np.array(labels, np.uint8)[:, None], rows], axis=1)
        records.tofile(os.path.join(directory, name + ".bin"))


def check_cifar(ds, batches):
    train_rows = np.concatenate([rows for rows, _ in batches[:5]])
    train_labels = np.concatenate([labels for _, labels in batches[:5]])
    test_rows, test_labels = batches[5]
    assert ds.input_shape == (32, 32, 3)
    assert ds.x_test.shape == (20, 32, 32, 3) and ds.x_test.dtype == np.uint8
    assert len(ds.y_train) + len(ds.y_val) == 100
    # Channel-planar: pixel (h, w) of channel c is byte c*1024 + h*32 + w.
    for n, h, w in [(0, 0, 0), (3, 1, 2), (19, 31, 30)]:
        for c in range(3):
            assert ds.x_test[n, h, w, c] == test_rows[n, c * 1024 + h * 32 + w]
    np.testing.assert_array_equal(ds.y_test, test_labels)
    # The validation=0 case is checked against the whole training set.
    if len(ds.y_val) == 0:
        expected = train_rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        np.testing.assert_array_equal(ds.x_train, expected)
        np.testing.assert_array_equal(ds.y_train, train_labels)


@pytest.fixture
def offline(monkeypatch):
    """No system locations, no network: only `data_dir` can provide data."""
    monkeypatch.setattr(data, "_system_roots", lambda spec: [])
    monkeypatch.setattr(data, "_system_tfds_dirs", lambda: [])
    monkeypatch.setattr(data, "_reachable", lambda url, timeout=3.0: False)


# --------------------------------------------------------------------------
# Real Fashion-MNIST from the Debian package.


@pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION),
    reason=f"{DEBIAN_FASHION} is absent: `apt-get install dataset-fashion-mnist`",
)
def test_fashion_mnist_from_debian_package():
    start = time.perf_counter()
    ds = data.load("fashion_mnist")
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"loading took {elapsed:.1f} s"
    assert ds.source == DEBIAN_FASHION
    assert ds.x_train.shape == (55000, 28, 28, 1)
    assert ds.x_val.shape == (5000, 28, 28, 1)
    assert ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.num_classes == 10 and ds.input_shape == (28, 28, 1)
    counts = np.bincount(np.concatenate([ds.y_train, ds.y_val]), minlength=10)
    np.testing.assert_array_equal(counts, [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert 0 < ds.x_train.mean() < 255

    again = data.load("fashion-mnist")
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, field), getattr(again, field))

    # The split is the fixed permutation of the official training set.
    full = data.load("fashion_mnist", validation=0)
    assert full.x_train.shape == (60000, 28, 28, 1) and full.x_val.shape == (0, 28, 28, 1)
    order = np.random.default_rng(data.SPLIT_SEED).permutation(60000)
    val_idx, train_idx = np.sort(order[:5000]), np.sort(order[5000:])
    assert not np.intersect1d(val_idx, train_idx).size
    np.testing.assert_array_equal(ds.x_val, full.x_train[val_idx])
    np.testing.assert_array_equal(ds.y_train, full.y_train[train_idx])


# --------------------------------------------------------------------------
# IDX parsing.


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i2", "f4"])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = write_idx(tmp_path / "a-idx3-ubyte", array, gz)
    out = data.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "not-idx"
    bad.write_bytes(b"\x1f\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match=r"not-idx is not an IDX file.*magic"):
        data.read_idx(bad)

    good = tmp_path / "labels"
    write_idx(good, np.arange(10, dtype=np.uint8))
    raw = good.read_bytes()
    (tmp_path / "short").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match=r"short is truncated.*\(10,\)"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "long").write_bytes(raw + b"\x00")
    with pytest.raises(ValueError, match=r"long has trailing bytes"):
        data.read_idx(tmp_path / "long")
    (tmp_path / "header").write_bytes(raw[:6])
    with pytest.raises(ValueError, match=r"header is truncated"):
        data.read_idx(tmp_path / "header")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(ValueError, match=r"bad.gz"):
        data.read_idx(tmp_path / "bad.gz")


@pytest.mark.parametrize("subdir", ["", "mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_from_data_dir(tmp_path, offline, subdir, gz):
    x_train, y_train, x_test, y_test = write_mnist_dir(tmp_path / subdir, gz=gz)
    ds = data.load("mnist", data_dir=tmp_path, validation=10)
    assert ds.source == str(tmp_path / subdir).rstrip("/")
    assert ds.x_train.shape == (50, 28, 28, 1) and ds.x_val.shape == (10, 28, 28, 1)
    assert ds.x_test.shape == (20, 28, 28, 1)
    assert ds.y_train.dtype == ds.y_val.dtype == ds.y_test.dtype == np.int64
    np.testing.assert_array_equal(ds.x_test[..., 0], x_test)
    np.testing.assert_array_equal(ds.y_test, y_test)
    # Train and validation partition the training set (first pixel = index).
    index = np.concatenate([ds.x_train[:, 0, 0, 0], ds.x_val[:, 0, 0, 0]])
    np.testing.assert_array_equal(np.sort(index), np.arange(60))
    np.testing.assert_array_equal(ds.y_train, y_train[ds.x_train[:, 0, 0, 0]])
    # Same split every time.
    again = data.load("mnist", data_dir=tmp_path, validation=10)
    np.testing.assert_array_equal(again.x_val, ds.x_val)


def test_malformed_file_in_data_dir_names_it(tmp_path, offline):
    write_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x14ab")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte is truncated"):
        data.load("mnist", data_dir=tmp_path, validation=10)


def test_wrong_contents_are_reported(tmp_path, offline):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((5, 32, 32), np.uint8),
             y_train=np.zeros(5), x_test=np.zeros((2, 32, 32), np.uint8), y_test=np.zeros(2))
    with pytest.raises(ValueError, match=r"mnist train split from .*mnist.npz has images "
                       r"\(5, 32, 32, 1\).*expected uint8 images \(N, 28, 28, 1\)"):
        data.load("mnist", data_dir=tmp_path)
    bad_labels = [(np.zeros((1, 3072), np.uint8), [11])] * 6
    write_cifar_py(tmp_path / "cifar-10-batches-py", bad_labels)
    match = r"cifar10 train labels .* are in \[11, 11\]; expected \[0, 10\)"
    with pytest.raises(ValueError, match=match):
        data.load("cifar10", data_dir=tmp_path, validation=0)


def test_keras_mnist_npz(tmp_path, offline):
    x_train, y_train, x_test, y_test = mnist_like()
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train,
             x_test=x_test, y_test=y_test)
    ds = data.load("mnist", data_dir=tmp_path, validation=0)
    assert ds.source == str(tmp_path / "mnist.npz")
    np.testing.assert_array_equal(ds.x_train[..., 0], x_train)


# --------------------------------------------------------------------------
# CIFAR-10 batches.


@pytest.mark.parametrize(
    "layout", ["cifar-10-batches-py", "cifar10/cifar-10-batches-py",
               "cifar-10-batches-py-target/cifar-10-batches-py", "."]
)
def test_cifar_python_batches(tmp_path, offline, layout):
    batches = cifar_batches()
    write_cifar_py(tmp_path / layout, batches)
    ds = data.load("cifar10", data_dir=tmp_path, validation=0)
    assert ds.source == str((tmp_path / layout)).removesuffix("/.")
    check_cifar(ds, batches)
    ds = data.load("cifar10", data_dir=tmp_path, validation=5)
    assert ds.x_train.shape == (95, 32, 32, 3) and ds.x_val.shape == (5, 32, 32, 3)
    check_cifar(ds, batches)


def test_cifar_python_batches_protocol_5_and_str_keys(tmp_path, offline):
    batches = cifar_batches()
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name, (rows, labels) in zip(CIFAR_NAMES, batches):
        with open(d / name, "wb") as f:
            pickle.dump({"data": rows, "labels": labels}, f, protocol=5)
    check_cifar(data.load("cifar10", data_dir=tmp_path, validation=0), batches)


def test_cifar_pickle_refuses_arbitrary_objects(tmp_path, offline):
    write_cifar_py(tmp_path / "cifar-10-batches-py", cifar_batches())
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": os.getcwd, b"labels": []}, f)
    with pytest.raises(ValueError, match=r"test_batch is not a CIFAR-10 python batch.*refusing"):
        data.load("cifar10", data_dir=tmp_path)


def test_cifar_binary_batches(tmp_path, offline):
    batches = cifar_batches()
    write_cifar_bin(tmp_path / "cifar-10-batches-bin", batches)
    ds = data.load("cifar10", data_dir=tmp_path, validation=0)
    assert ds.source == str(tmp_path / "cifar-10-batches-bin")
    check_cifar(ds, batches)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").write_bytes(bytes(3074))
    with pytest.raises(ValueError, match=r"data_batch_3.bin is not a CIFAR-10 binary batch"):
        data.load("cifar10", data_dir=tmp_path, validation=0)


# --------------------------------------------------------------------------
# classes= and validation=.


def test_classes_filter_and_relabel(tmp_path, offline):
    write_mnist_dir(tmp_path, n_train=100, n_test=30)
    ds = data.load("mnist", data_dir=tmp_path, validation=5, classes=(7, 2, 9))
    assert ds.num_classes == 3 and ds.classes == (7, 2, 9)
    assert len(ds.y_train) + len(ds.y_val) == 30 and len(ds.y_val) == 5
    assert len(ds.y_test) == 9
    # Original label = index % 10 (stored in the first pixel); relabelled in order.
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        original = x[:, 0, 0, 0] % 10
        np.testing.assert_array_equal(np.array([7, 2, 9])[y], original)
    match = r"validation must be in \[0, 30\).*classes=\(7, 2, 9\).*Received: validation=30"
    with pytest.raises(ValueError, match=match):
        data.load("mnist", data_dir=tmp_path, validation=30, classes=(7, 2, 9))

    full = data.load("mnist", data_dir=tmp_path, validation=0)
    assert full.classes == tuple(range(10)) and full.num_classes == 10
    low = data.load("mnist", data_dir=tmp_path, validation=0, classes=range(5))
    high = data.load("mnist", data_dir=tmp_path, validation=0, classes=range(5, 10))
    np.testing.assert_array_equal(low.y_train, full.y_train[full.y_train < 5])
    np.testing.assert_array_equal(high.y_train, full.y_train[full.y_train >= 5] - 5)


def test_validation_zero_and_repr(tmp_path, offline):
    write_mnist_dir(tmp_path)
    ds = data.load("mnist", data_dir=tmp_path, validation=0)
    assert ds.x_val.shape == (0, 28, 28, 1) and ds.y_val.shape == (0,)
    assert "train=60, val=0, test=20" in repr(ds)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "imagenet"},
         r"name must be one of 'mnist', 'fashion_mnist', 'cifar10'.*Received: name='imagenet'"),
        ({"validation": -1}, r"validation must be a non-negative integer.*Received: validation=-1"),
        ({"validation": 2.5}, r"validation must be a non-negative integer.*Received: validation=2.5"),
        ({"validation": 60}, r"validation must be in \[0, 60\).*Received: validation=60"),
        ({"classes": (1, 1)},
         r"classes must be a non-empty sequence of distinct class ids in \[0, 10\)\. "
         r"Received: classes=\(1, 1\)"),
        ({"classes": (3, 10)}, r"classes must be .*Received: classes=\(3, 10\)"),
        ({"classes": ()}, r"classes must be .*Received: classes=\(\)"),
    ],
)
def test_bad_arguments(tmp_path, offline, kwargs, match):
    write_mnist_dir(tmp_path)
    kwargs = {"name": "mnist", "data_dir": tmp_path, **kwargs}
    with pytest.raises(ValueError, match=match):
        data.load(**kwargs)


# --------------------------------------------------------------------------
# Not found, offline; tensorflow-datasets.


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_offline_not_found_is_fast_and_helpful(tmp_path, offline, name):
    start = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load(name, data_dir=tmp_path)
    assert time.perf_counter() - start < 2
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert f"Could not find the {name} dataset" in message
    assert str(tmp_path) in message
    assert "not reachable" in message
    assert "data_dir" in message and "--data-dir" in message  # way (a)
    assert "tensorflow-datasets downloads it automatically" in message  # way (b)
    assert ("apt-get install dataset-fashion-mnist" in message) == (name == "fashion_mnist")


def test_not_found_lists_system_locations(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr(data, "_system_roots", lambda spec: [(tmp_path / "nowhere", True)])
    monkeypatch.setattr(data, "_system_tfds_dirs", lambda: [tmp_path / "tfds"])
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("mnist")
    message = str(info.value)
    assert f"{tmp_path / 'nowhere'} (absent)" in message
    assert f"{tmp_path / 'tfds' / 'mnist'} (tensorflow-datasets: not prepared)" in message


def test_reachability_check_is_bounded():
    start = time.perf_counter()
    # 192.0.2.0/24 is reserved for documentation: never answers.
    assert not data._reachable("http://192.0.2.1:81/", timeout=0.5)
    assert time.perf_counter() - start < 1.5


def test_failed_download_is_reported(tmp_path, offline, monkeypatch):
    monkeypatch.setattr(data, "_reachable", lambda url, timeout=3.0: True)

    def fail(spec, data_dir, download):
        raise ConnectionError("proxy said no")

    monkeypatch.setattr(data, "_load_tfds", fail)
    match = r"failed: ConnectionError\('proxy said no'\)"
    with pytest.raises(data.DatasetNotFoundError, match=match):
        data.load("mnist", data_dir=tmp_path)


def test_prepared_tfds_dir_is_used_without_download(tmp_path, offline, monkeypatch):
    (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)
    (tmp_path / "cifar10" / "3.0.2" / "dataset_info.json").write_text("{}")
    calls = []

    def fake(spec, data_dir, download):
        calls.append((data_dir, download))
        x = np.zeros((30, 32, 32, 3), np.uint8)
        return x, np.arange(30) % 10, x[:10], np.arange(10)

    monkeypatch.setattr(data, "_load_tfds", fake)
    ds = data.load("cifar10", data_dir=tmp_path, validation=3)
    assert calls == [(str(tmp_path), False)]
    assert ds.source == f"tensorflow-datasets ({tmp_path / 'cifar10' / '3.0.2'})"
    assert ds.x_train.shape == (27, 32, 32, 3)


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_branch_with_mock_data(tmp_path, offline, monkeypatch, name, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data, "_reachable", lambda url, timeout=3.0: True)
    with tfds.testing.mock_data(num_examples=40):
        ds = data.load(name, data_dir=tmp_path, validation=7)
        again = data.load(name, data_dir=tmp_path, validation=7)
        small = data.load(name, data_dir=tmp_path, validation=2, classes=(4, 0))
    assert ds.source == f"tensorflow-datasets ({tmp_path})"
    assert ds.x_train.shape == (33, *shape) and ds.x_val.shape == (7, *shape)
    assert ds.x_test.shape == (40, *shape)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_val, again.x_val)
    assert small.num_classes == 2 and set(np.unique(small.y_test)) <= {0, 1}
    assert len(small.y_val) == 2
