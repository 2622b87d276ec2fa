"""keras-lottery: find lottery tickets (sparse trainable subnetworks) in Keras 3."""

from keras_lottery import analysis
from keras_lottery.runner import data, models
from keras_lottery.runner.config import PRESETS, LotteryConfig
from keras_lottery.runner.data import Dataset, DatasetNotFoundError
from keras_lottery.runner.distribute import WorkerFailedError, local_cluster, make_strategy
from keras_lottery.runner.search import LotteryResult, find_ticket
from keras_lottery.export import TicketSize, save_ticket, strip
from keras_lottery.masked_layer import MaskedLayer, prunable
from keras_lottery.masked_layer import register_prunable
from keras_lottery.mask_math import (
    global_magnitude_masks,
    layerwise_magnitude_masks,
    mask_overlap,
    permuted_masks,
    random_masks,
)
from keras_lottery.pruning import (
    get_kernels,
    get_masks,
    prune_by_magnitude,
    prune_randomly,
    set_masks,
    sparsity,
    sparsity_by_layer,
)
from keras_lottery.rewind import (
    RewindCallback,
    WeightSnapshot,
    reinitialize,
    restore_weights,
    snapshot_weights,
)

__version__ = "0.1.0"
