"""GraSP at initialization (Wang, Zhang & Grosse, ICLR 2020).

Gradient Signal Preservation scores each weight by `S = -w ⊙ (H g)`: `g`
the gradient of the training loss, `H` its Hessian, both with respect to
the masked weights on a few batches, `w` the weight at the rewind point.
`S_q` is, to first order, the change of the gradient norm `gᵀg` (halved)
when weight `q` is removed (`δ = -w_q e_q`, `Δ ≈ δᵀ H g`). The paper keeps
the gradient flow: it removes the weights with the *highest* `S` (their
removal lowers the flow least, or raises it). As a "larger = kept" score
this pruner returns `-S = w ⊙ Hg`, so the lowest `w ⊙ Hg` are pruned. The
scores are signed and `masks_from_scores` ranks them as they are, not
their magnitude (the variant on `|S|` that Frankle et al. 2021 try is
not this).

As the reference code (github.com/alecwangcq/GraSP), the model's outputs
are divided by a temperature (200) before the loss, which keeps the
softmax from saturating at initialization; set `temperature=1` for a
loss that does not take logits.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_lottery.gradients import hessian_gradient_product, loss_gradients
from keras_lottery.pruners.base import AT_INIT, GRADIENTS, Pruner, PruneRequest, register
from keras_lottery.pruners.snip import check_batches, check_training, state_kept, training_data


@dataclasses.dataclass(frozen=True)
class GraspOptions:
    """Options of GraSP.

    Attributes:
        batches: training batches `g` and `H` are averaged over.
        temperature: the model's outputs (logits) are divided by it before
            the loss (200 as the reference code; 1 leaves them as they are).
        training: call the model in training mode (batch normalization on
            the batch's statistics, as the reference code, which leaves the
            network in training mode; the moving statistics are restored
            afterwards). Default: inference mode, as SNIP and SynFlow here.
    """

    batches: int = 1
    temperature: float = 200.0
    training: bool = False

    def __post_init__(self):
        check_batches(self.batches)
        check_training(self.training)
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not self.temperature > 0:
            raise ValueError(f"temperature must be a number > 0. Received: "
                             f"temperature={self.temperature!r}")


@register
class Grasp(Pruner):
    """GraSP at initialization: keep the largest weight x Hessian-gradient (Wang et al. 2020)."""

    name = "grasp"
    when = AT_INIT
    needs = (GRADIENTS,)
    Options = GraspOptions

    def scores(self, request: PruneRequest) -> dict[str, np.ndarray]:
        batches, loss = training_data(request, self.name, self.options.batches)
        temperature = float(self.options.temperature)
        if temperature != 1.0:
            plain = loss

            def loss(y_true, y_pred):
                return plain(y_true, keras.tree.map_structure(lambda o: o / temperature,
                                                              y_pred))

        training = self.options.training
        with state_kept(request.model):
            grads = loss_gradients(request.model, loss, batches, training=training)
            hg = hessian_gradient_product(request.model, loss, batches, grads, training=training)
        kernels = request.kernels()
        # -S = w ⊙ Hg: larger = kept (the paper prunes the largest S).
        return {key: kernels[key].astype(np.float64) * hg[key] for key in hg}
