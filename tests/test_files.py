"""Damaged files are named, not tracebacks; checkpoints fall back to the previous one."""

import os
import struct
import warnings
import zipfile

import numpy as np
import pytest

from keras_lottery.files import CorruptFileError, read_json, read_npz, write_json, write_npz
from keras_lottery.runner import checkpoint
from keras_lottery.runner.checkpoint import BranchState, load_latest, previous_path


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "kernel": rng.normal(size=(300, 50)).astype("float32"),
        "steps": np.arange(10),
        "note": np.array('{"x": 1}'),
    }


def _npz(tmp_path, seed: int = 0) -> str:
    path = str(tmp_path / "arrays.npz")
    write_npz(path, _arrays(seed))
    return path


def _overwrite(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _flip(path: str, position: int) -> None:
    data = bytearray(_read_bytes(path))
    data[position] ^= 0x10
    _overwrite(path, bytes(data))


def _raises_corrupt(read, path: str, reason: str) -> CorruptFileError:
    with pytest.raises(CorruptFileError, match=reason) as info:
        read(path)
    assert path in str(info.value) and info.value.path == path
    assert "delete it" in str(info.value).lower()
    return info.value


# files.read_npz / read_json ------------------------------------------------------
def test_npz_round_trip_is_exact(tmp_path):
    loaded = read_npz(_npz(tmp_path))
    for key, value in _arrays().items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)


def test_empty_npz_is_corrupt(tmp_path):
    path = _npz(tmp_path)
    _overwrite(path, b"")
    _raises_corrupt(read_npz, path, "empty")


def test_truncated_npz_is_corrupt(tmp_path):
    path = _npz(tmp_path)
    _overwrite(path, _read_bytes(path)[: os.path.getsize(path) // 2])
    _raises_corrupt(read_npz, path, "not a zip archive")


def test_random_bytes_are_corrupt(tmp_path):
    path = _npz(tmp_path)
    _overwrite(path, np.random.default_rng(0).bytes(5000))
    _raises_corrupt(read_npz, path, "not a zip archive")


def test_flipped_byte_in_compressed_data_is_corrupt(tmp_path):
    path = _npz(tmp_path)
    with zipfile.ZipFile(path) as archive:
        kernel = archive.getinfo("kernel.npy")
    _flip(path, kernel.header_offset + kernel.compress_size // 2)
    # Deflate usually decodes the damaged stream and the CRC fails; it may also
    # reject the stream itself.
    _raises_corrupt(read_npz, path, "CRC|compressed data")


def test_damaged_array_header_is_corrupt_even_if_it_declares_less_data(tmp_path):
    path = str(tmp_path / "stored.npz")
    np.savez(path, **_arrays())  # stored, uncompressed: the header is plain bytes
    _overwrite(path, _read_bytes(path).replace(b"(300, 50)", b"(30, 50) "))
    with np.load(path) as data:  # numpy alone returns a tenth of the array
        assert data["kernel"].shape == (30, 50)
    _raises_corrupt(read_npz, path, "CRC")


def test_directory_entry_hiding_members_is_corrupt(tmp_path):
    path = _npz(tmp_path)
    with zipfile.ZipFile(path) as archive:
        start = archive.start_dir
    data = bytearray(_read_bytes(path))
    name, extra, comment = struct.unpack("<HHH", data[start + 28:start + 34])
    later_entries = len(data) - 22 - (start + 46 + name + extra + comment)
    # The first entry's extra field now swallows the entries after it.
    struct.pack_into("<H", data, start + 30, extra + later_entries)
    _overwrite(path, bytes(data))
    _raises_corrupt(read_npz, path, "damaged")


@pytest.mark.parametrize("fraction", np.linspace(0.0, 0.999, 10))
def test_npz_truncated_anywhere_is_always_corrupt(tmp_path, fraction):
    path = _npz(tmp_path)
    data = _read_bytes(path)
    _overwrite(path, data[: int(fraction * len(data))])
    _raises_corrupt(read_npz, path, "damaged")


def test_missing_files_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_npz(str(tmp_path / "absent.npz"))
    with pytest.raises(FileNotFoundError):
        read_json(str(tmp_path / "absent.json"))


def test_json_round_trip(tmp_path):
    path = str(tmp_path / "data.json")
    write_json(path, {"classes": 10, "shape": [28, 28, 1]})
    assert read_json(path) == {"classes": 10, "shape": [28, 28, 1]}


@pytest.mark.parametrize("damage, reason", [
    (lambda good: b"", "empty"),
    (lambda good: good[: len(good) // 2], "not valid JSON"),
    (lambda good: b"\xff\xfe" + good, "not UTF-8"),
    (lambda good: np.random.default_rng(0).bytes(200), "not UTF-8|not valid JSON"),
])
def test_damaged_json_is_corrupt(tmp_path, damage, reason):
    path = str(tmp_path / "data.json")
    write_json(path, {"classes": 10, "shape": [28, 28, 1]})
    _overwrite(path, damage(_read_bytes(path)))
    _raises_corrupt(read_json, path, reason)


# runner.checkpoint ---------------------------------------------------------------
def _state(step: int) -> BranchState:
    rng = np.random.default_rng(step)
    return BranchState(
        step=step,
        history=[{"step": step, "val_loss": 0.5, "val_accuracy": 0.9}],
        model_values=[rng.normal(size=(4, 3)).astype("float32"), np.array(7, "int64")],
        optimizer_values=[np.array(step, "int64"), rng.normal(size=(4, 3)).astype("float32")],
        extra={"eb_window": rng.random((2, 5)) > 0.5, "eb_count": np.array(3)},
    )


def _assert_equal(a: BranchState, b: BranchState) -> None:
    assert (a.step, a.history) == (b.step, b.history)
    assert sorted(a.extra) == sorted(b.extra)
    pairs = list(zip(a.model_values, b.model_values)) + list(zip(a.optimizer_values, b.optimizer_values))
    pairs += [(a.extra[k], b.extra[k]) for k in a.extra]
    assert len(pairs) == len(a.model_values) + len(a.optimizer_values) + len(a.extra)
    for x, y in pairs:
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_checkpoint_round_trip_keeps_every_array_and_the_extras(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    _state(100).save(path)
    _assert_equal(BranchState.load(path), _state(100))
    assert not os.path.exists(previous_path(path))


def test_saving_again_keeps_the_previous_checkpoint(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    _state(100).save(path)
    _state(200).save(path)
    assert previous_path(path) == str(tmp_path / "checkpoint.prev.npz")
    _assert_equal(BranchState.load(path), _state(200))
    _assert_equal(BranchState.load(previous_path(path)), _state(100))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "checkpoint.prev.npz"]


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    _state(100).save(path)
    _state(200).save(path)
    _overwrite(path, _read_bytes(path)[:1000])
    with pytest.warns(UserWarning, match="damaged checkpoint .*checkpoint.npz.*resumes from the "
                                         "previous checkpoint .*checkpoint.prev.npz at step 100"):
        state = load_latest(path)
    _assert_equal(state, _state(100))
    assert not os.path.exists(path)


def test_flipped_byte_in_a_stored_checkpoints_weights_falls_back(tmp_path):
    """Checkpoints are stored uncompressed; the CRC still finds a damaged weight."""
    path = str(tmp_path / "checkpoint.npz")
    _state(100).save(path)
    _state(200).save(path)
    with zipfile.ZipFile(path) as archive:
        weights = archive.getinfo("m00000.npy")
    assert weights.compress_type == zipfile.ZIP_STORED
    name, extra = struct.unpack("<HH", _read_bytes(path)[weights.header_offset + 26:][:4])
    data_end = weights.header_offset + 30 + name + extra + weights.compress_size
    _flip(path, data_end - 1)  # the array's last value
    with pytest.warns(UserWarning, match="damaged checkpoint .*CRC"):
        state = load_latest(path)
    _assert_equal(state, _state(100))


def test_both_checkpoints_damaged_restart_the_branch(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    _state(100).save(path)
    _state(200).save(path)
    _overwrite(path, b"")
    _overwrite(previous_path(path), b"not a zip")
    with pytest.warns(UserWarning, match="restarts from the beginning of the branch"):
        assert load_latest(path) is None
    assert os.listdir(tmp_path) == []


def test_no_checkpoint_is_none_without_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_latest(str(tmp_path / "checkpoint.npz")) is None


def test_crash_between_renames_resumes_from_the_previous_checkpoint(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    _state(100).save(path)
    _state(200).save(path)
    os.remove(path)  # as if killed after keeping the previous one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_equal(load_latest(path), _state(100))


def test_saving_over_a_damaged_checkpoint_keeps_the_older_good_one(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    _state(100).save(path)
    _state(200).save(path)
    _overwrite(path, _read_bytes(path)[:-10])
    with pytest.warns(UserWarning, match="Dropped the damaged checkpoint"):
        _state(300).save(path)
    _assert_equal(BranchState.load(path), _state(300))
    _assert_equal(BranchState.load(previous_path(path)), _state(100))


def test_an_npz_that_is_not_a_checkpoint_is_corrupt(tmp_path):
    path = _npz(tmp_path)
    _raises_corrupt(BranchState.load, path, "not a branch checkpoint")


def test_remove_deletes_both_checkpoints(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    _state(100).save(path)
    _state(200).save(path)
    checkpoint.remove(path)
    checkpoint.remove(path)  # absent files are fine
    assert os.listdir(tmp_path) == []
