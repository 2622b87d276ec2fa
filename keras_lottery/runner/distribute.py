"""`tf.distribute` strategies by name, and who may write files.

Only the chief writes the run directory and TensorBoard logs; every worker
computes the same masks from the same (all-reduced) weights, so no mask is
ever sent between workers and no replica can drift.

This module imports without TensorFlow (`WorkerFailedError`,
`local_cluster`); a function that needs TensorFlow imports it when called
and, without it, raises one `ImportError` naming what to install.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import warnings
from collections.abc import Iterator

from typing import TYPE_CHECKING

from keras_lottery import compat

if TYPE_CHECKING:
    import tensorflow as tf


def _tf():
    return compat.import_tensorflow("tf.distribute strategies (keras_lottery.runner.distribute)")


def peer_failures() -> tuple[type[Exception], ...]:
    """What TensorFlow raises on a worker whose peer died or stopped answering."""
    tf = _tf()
    return (
        tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
        tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError,
    )


class WorkerFailedError(RuntimeError):
    """Another worker of a multi-worker run failed or became unreachable."""


def is_multiworker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several processes."""
    tf = _tf()
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        compat.in_multi_worker_mode(strategy)
    )


@contextlib.contextmanager
def peer_failures_reported(strategy: tf.distribute.Strategy) -> Iterator[None]:
    """Turns TensorFlow's collective errors into a `WorkerFailedError`."""
    failures = peer_failures()
    try:
        yield
    except failures as error:
        if not is_multiworker(strategy):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkerFailedError(
            "a collective operation failed: another worker died or is unreachable "
            f"({type(error).__name__}: {first}). Restart every worker with the same "
            "command; the run resumes from its last checkpoint."
        ) from error


def check_workers_agree(strategy: tf.distribute.Strategy, value: int, what: str) -> None:
    """Fails unless every worker passes the same `value` (e.g. run progress).

    Raises:
        WorkerFailedError: if the workers disagree, which means they see
            different run directories (resuming needs a shared logdir).
    """
    if not is_multiworker(strategy):
        return
    tf = _tf()
    mine = tf.constant(float(value % (2**31)), tf.float64)
    mean = strategy.reduce("MEAN", strategy.run(lambda: tf.identity(mine)), axis=None)
    spread = strategy.reduce("SUM", strategy.run(lambda: tf.square(mine - mean)), axis=None)
    if float(spread) > 0:
        raise WorkerFailedError(
            f"the workers disagree on {what}. Every worker must see the same "
            "run directory: put --logdir on a filesystem all workers share to "
            "resume a multi-worker run."
        )


@functools.cache
def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy a config names, created once per process.

    A process reuses one strategy per name: two collective strategies over
    the same devices would allocate the same collective keys, and
    MultiWorkerMirroredStrategy can be set up only once per process anyway.

    Args:
        name: `"default"` (one device), `"mirrored"` (all local GPUs, or the
            local logical CPUs), `"multiworker"` (one process per host,
            described by the `TF_CONFIG` environment variable) or `"tpu"`
            (routed to `TPUStrategy`; untested here).

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: for an unknown name, or `"multiworker"` without a
            usable `TF_CONFIG`, or `"tpu"` without a reachable TPU.

    Example:
    >>> strategy = make_strategy("mirrored")
    """
    tf = _tf()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        cluster = _tf_config()
        if len(cluster.get("cluster", {}).get("worker", [])) < 1 or "task" not in cluster:
            raise ValueError(
                "strategy='multiworker' needs the TF_CONFIG environment variable "
                'with a cluster and this process\'s task, e.g. TF_CONFIG=\'{"cluster": '
                '{"worker": ["host1:12345", "host2:12345"]}, "task": {"type": '
                '"worker", "index": 0}}\'. Received: TF_CONFIG='
                f"{os.environ.get('TF_CONFIG')!r}"
            )
        # No per-collective `timeout_seconds`: in TF 2.21 every collective
        # with a timeout holds a thread until the timeout expires, so a
        # training loop piles up thousands of threads and dies. A dead or
        # stalled peer is caught instead by the connection reset and by the
        # strategy's own health check, which aborts pending collectives.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise ValueError(f"strategy='tpu' but no TPU is reachable: {error}") from error
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(
        "strategy must be one of ['default', 'mirrored', 'multiworker', 'tpu']. "
        f"Received: strategy={name!r}"
    )


def use_threads(threads: int, inter_op_threads: int = 0) -> None:
    """Runs TensorFlow's ops on `threads` threads each (intra-op parallelism)
    and up to `inter_op_threads` ops side by side (inter-op; 0: as many as
    `threads`). 0 for both leaves TensorFlow's defaults (one per core, or its
    `TF_NUM_INTRAOP_THREADS` / `TF_NUM_INTEROP_THREADS` environment
    variables); 0 for `threads` alone leaves the intra-op pool.

    Small layers gain little from splitting an op: LeNet-300-100 takes a
    quarter to a third less CPU time on one thread per op than on two, as
    its steps spend much of it handing small ops between threads
    (docs/speed.md, "Sixth round"), and runs fastest with two ops side by
    side (0.87x the wall time of one, "Tenth round"); convolutions train
    faster on more threads per op. The counts are meant to change speed
    only: the README's LeNet-300-100 run writes the same files bit for bit
    on 1 thread, on 1 per op with 2 side by side and on TensorFlow's
    default (checked), but TensorFlow does not promise it for every op.
    TensorFlow fixes its thread pools when it runs its first op; after
    that, counts that differ from the pools' are not applied, and a
    `RuntimeWarning` says so.

    Args:
        threads: threads per op (and per pool, without `inter_op_threads`), >= 0.
        inter_op_threads: threads for ops side by side, >= 0 (0: `threads`).

    Example:
    >>> use_threads(1, inter_op_threads=2)  # at the start of the process
    """
    inter_op = inter_op_threads or threads
    if threads == 0 and inter_op == 0:
        return
    pools = _tf().config.threading
    current = (pools.get_intra_op_parallelism_threads(),
               pools.get_inter_op_parallelism_threads())
    if current == (threads or current[0], inter_op):
        return
    try:
        if threads:
            pools.set_intra_op_parallelism_threads(threads)
        pools.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        asked = f"threads={threads}" + (
            f", inter_op_threads={inter_op_threads}" if inter_op_threads else "")
        warnings.warn(
            f"{asked} was not applied: TensorFlow had already started its "
            f"thread pools (intra-op {current[0]}, inter-op {current[1]}; 0 = one per "
            "core), which it sets up once, at its first op. The run goes on with those "
            "pools; to use the counts, set them before anything runs a TensorFlow op, or "
            "give threads=0 (and inter_op_threads=0) to leave the pools as they are.",
            RuntimeWarning, stacklevel=2)


def _tf_config() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes files (always true off multi-worker)."""
    if not is_multiworker(strategy):
        return True
    task_type, task_id = strategy.cluster_resolver.task_type, strategy.cluster_resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0)


def local_cluster(workers: int) -> list[str]:
    """`TF_CONFIG` values for `workers` processes on this host (loopback).

    Ports are chosen free at call time. Useful to try a multi-worker run on
    one machine before launching it across hosts.

    Args:
        workers: number of worker processes.

    Returns:
        One JSON string per worker, index order (worker 0 is the chief).

    Example:
    >>> configs = local_cluster(2)
    >>> # start worker i with env TF_CONFIG=configs[i] and --strategy multiworker
    """
    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
            for i in range(workers)]
