"""TFMOT's pruning schedules: when to prune, and to which sparsity.

`schedule(step)` returns `(should_prune, sparsity)` as TFMOT 0.8's
schedules do, with the same parameters, defaults, validation and float32
arithmetic, so the sparsity is the value TFMOT computes at every step. The
values are NumPy scalars (`numpy.bool_`, `numpy.float32`) instead of
TensorFlow tensors: the schedule is read by `UpdatePruningStep` between
training steps, on every Keras backend.
"""

from __future__ import annotations

import abc
import ctypes
import ctypes.util
import math
import numbers

import numpy as np


def _c_powf():
    """The C library's `powf`, which TensorFlow's scalar `tf.pow` calls."""
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        powf = libm.powf
    except (OSError, AttributeError):
        return None
    powf.restype, powf.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
    return powf


_POWF = _c_powf()


def _pow32(base: np.float32, exponent: np.float32) -> np.float32:
    """float32 `base ** exponent` rounded as TensorFlow rounds it on this
    machine: through the C library's `powf` (NumPy's vectorized float32
    power differs in the last bit for about one value in five); without
    one, the float64 power rounded to float32 (at most 1 ulp apart)."""
    if _POWF is not None:
        return np.float32(_POWF(float(base), float(exponent)))
    return np.float32(math.pow(float(base), float(exponent)))


def _as_step(step) -> int:
    """A training step (int, NumPy or backend scalar) as a Python int."""
    if isinstance(step, numbers.Integral):
        return int(step)
    value = np.asarray(step if isinstance(step, np.ndarray) else _to_numpy(step))
    if value.shape != () or not np.issubdtype(value.dtype, np.number):
        raise ValueError(f"step must be an integer scalar. Received: step={step!r}")
    return int(value)


def _to_numpy(value):
    import keras

    return keras.ops.convert_to_numpy(value)


class PruningSchedule(abc.ABC):
    """When to prune a layer and to which sparsity, step by step.

    Subclass it and implement `__call__(step) -> (should_prune, sparsity)`
    and `get_config()` for a schedule of your own, as in TFMOT.

    Example:
    >>> schedule = ConstantSparsity(0.5, begin_step=0, frequency=100)
    >>> schedule(200)
    (True, 0.5)
    """

    def _should_prune_in_step(self, step, begin_step, end_step, frequency) -> np.bool_:
        """Whether `step` is in [begin_step, end_step] (end_step -1: no end)
        and a multiple of `frequency` steps after `begin_step`."""
        step = _as_step(step)
        in_range = step >= begin_step and (step <= end_step or end_step < 0)
        return np.bool_(in_range and (step - begin_step) % frequency == 0)

    def _validate_step(self, begin_step, end_step, frequency, allow_negative_1) -> None:
        """TFMOT's checks of the step parameters, with its messages."""
        for name, value in (("begin_step", begin_step), ("end_step", end_step),
                            ("frequency", frequency)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer. Received: {name}={value!r}")
        if begin_step < 0:
            raise ValueError(f"begin_step should be >= 0. Received: begin_step={begin_step}")
        if not allow_negative_1 and end_step == -1:
            raise ValueError(
                "end_step cannot be -1 (a PolynomialDecay needs an end to decay to "
                "final_sparsity; ConstantSparsity prunes without end). Received: end_step=-1"
            )
        if end_step != -1:
            if end_step < 0:
                raise ValueError(f"end_step can be -1 or >= 0. Received: end_step={end_step}")
            if end_step < begin_step:
                raise ValueError(
                    "begin_step should be <= end_step if end_step != -1. Received: "
                    f"begin_step={begin_step}, end_step={end_step}"
                )
        if frequency <= 0:
            raise ValueError(f"frequency should be > 0. Received: frequency={frequency}")

    def _validate_sparsity(self, sparsity, variable_name) -> None:
        if (not isinstance(sparsity, numbers.Real) or isinstance(sparsity, bool)
                or not 0.0 <= sparsity < 1.0):
            raise ValueError(
                f"{variable_name} must be in range [0,1). Received: {variable_name}={sparsity!r}"
            )

    @abc.abstractmethod
    def __call__(self, step):
        """Returns `(should_prune, sparsity)` at `step`."""
        raise NotImplementedError("PruningSchedule implementation must override __call__")

    @abc.abstractmethod
    def get_config(self) -> dict:
        raise NotImplementedError("PruningSchedule implementation override get_config")

    @classmethod
    def from_config(cls, config: dict) -> PruningSchedule:
        """A schedule from `get_config()["config"]`, as TFMOT's."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config()["config"].items())
        return f"{type(self).__name__}({args})"


class ConstantSparsity(PruningSchedule):
    """Prunes to one sparsity every `frequency` steps in [begin_step, end_step].

    Args:
        target_sparsity: the sparsity, in [0, 1).
        begin_step: the first step that prunes.
        end_step: the last step that may prune; -1 (default): no end.
        frequency: prune every `frequency` steps from `begin_step` (100).

    Example:
    >>> ConstantSparsity(0.8, begin_step=10, frequency=5)(15)
    (True, 0.8)
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = target_sparsity
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._validate_step(begin_step, end_step, frequency, True)
        self._validate_sparsity(target_sparsity, "target_sparsity")

    def __call__(self, step):
        return (self._should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
                np.float32(self.target_sparsity))

    def get_config(self) -> dict:
        return {"class_name": type(self).__name__,
                "config": {"target_sparsity": self.target_sparsity,
                           "begin_step": self.begin_step, "end_step": self.end_step,
                           "frequency": self.frequency}}


class PolynomialDecay(PruningSchedule):
    """Gradual pruning (Zhu & Gupta 2017): sparsity rises as a polynomial.

    `sparsity(step) = final + (initial - final) * (1 - p) ** power` with
    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`,
    computed in float32 as TFMOT does; pruning happens every `frequency`
    steps in [begin_step, end_step].

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1).
        begin_step: the first step that prunes.
        end_step: the step that reaches `final_sparsity` (not -1).
        power: the polynomial's exponent (3).
        frequency: prune every `frequency` steps from `begin_step` (100).

    Example:
    >>> schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)
    >>> [round(float(schedule(s)[1]), 3) for s in (0, 500, 1000)]
    [0.0, 0.7, 0.8]
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step, power=3,
                 frequency=100):
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity
        self.power = power
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self._validate_step(begin_step, end_step, frequency, False)
        self._validate_sparsity(initial_sparsity, "initial_sparsity")
        self._validate_sparsity(final_sparsity, "final_sparsity")

    def __call__(self, step):
        step = _as_step(step)
        span = self.end_step - self.begin_step
        f32 = np.float32
        if span == 0:
            # TFMOT divides by zero here (NaN sparsity at begin_step); the
            # decay is then a jump to final_sparsity at begin_step.
            p = f32(1.0 if step >= self.begin_step else 0.0)
        else:
            p = np.minimum(f32(1.0), np.maximum(f32(0.0), f32(step - self.begin_step) / f32(span)))
        decay = _pow32(f32(1.0) - p, f32(self.power))
        sparsity = f32(self.initial_sparsity - self.final_sparsity) * decay + f32(
            self.final_sparsity)
        return (self._should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
                f32(sparsity))

    def get_config(self) -> dict:
        return {"class_name": type(self).__name__,
                "config": {"initial_sparsity": self.initial_sparsity,
                           "final_sparsity": self.final_sparsity, "power": self.power,
                           "begin_step": self.begin_step, "end_step": self.end_step,
                           "frequency": self.frequency}}
