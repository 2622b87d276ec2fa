"""keras-lottery: find lottery tickets (sparse trainable subnetworks) in Keras 3.

Two halves. The library a Keras user imports: `prunable` and the masks'
slots (masking), which weights are prunable (prunable_weights), what
pruning does to each weight (inventory), the mask math (mask_math), pruning
a model (pruning), rewinding (rewind), loading a masked `.keras` file
(saving), leaving keras-lottery (export) and the analyses (analysis). The experiment runner (`keras_lottery.runner`): the
lottery search (`LotterySearch` for a model of your own, `find_ticket`
for the presets), training, run directories, TensorBoard, reports and the
`keras-lottery` command line.
"""

# The library.
from keras_lottery import analysis
from keras_lottery.compact import CompactReport, compact, compact_report
from keras_lottery.export import TicketSize, save_ticket, strip
from keras_lottery.interpolation import InterpolationCurve, instability, interpolation_curve
from keras_lottery.mask_math import (
    GRANULARITIES,
    SCOPES,
    magnitude_masks,
    global_magnitude_masks,
    layerwise_magnitude_masks,
    mask_overlap,
    permuted_masks,
    random_masks,
)
from keras_lottery.inventory import Inventory, inventory
from keras_lottery.masking import MaskSlot, mask_slots, prunable
from keras_lottery.prunable_registry import PRUNABLE_KERNELS, prunable_weights, register_prunable
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
from keras_lottery.saving import load_model, saved_masks

# The experiment runner.
from keras_lottery.runner.presets import data, models
from keras_lottery.runner.branches import CONTROLS, BranchStart, control
from keras_lottery.runner.config import LotteryConfig
from keras_lottery.runner.presets import PRESETS, PresetConfig
from keras_lottery.runner.presets.data import Dataset, DatasetNotFoundError
from keras_lottery.runner.distribute import WorkerFailedError, local_cluster, make_strategy
from keras_lottery.runner.engine import LotteryResult
from keras_lottery.runner.errors import BranchFailedError, DivergedError, MonitorError
from keras_lottery.runner.lock import RunLockedError
from keras_lottery.runner.presets import find_ticket
from keras_lottery.runner.search import LotterySearch

__version__ = "0.3.0"
