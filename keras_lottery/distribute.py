"""`tf.distribute` strategies by name, and who may write files.

Only the chief writes the run directory and TensorBoard logs; every worker
computes the same masks from the same (all-reduced) weights, so no mask is
ever sent between workers and no replica can drift.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Creates the strategy a config names.

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
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=float(os.environ.get("KERAS_LOTTERY_COLLECTIVE_TIMEOUT", 120))
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
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


def _tf_config() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes files (always true off multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0)
