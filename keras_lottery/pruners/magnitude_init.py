"""Magnitude pruning at initialization: the smallest weights of θ0.

The rewind point's own magnitudes, pruned once to the target before the
single training: the control that tells how much of a lottery ticket's
mask the training that found it contributed (Frankle et al., ICLR 2021).
"""

from __future__ import annotations

from keras_lottery.pruners.base import AT_INIT, register
from keras_lottery.pruners.magnitude import Magnitude


@register
class MagnitudeInit(Magnitude):
    """The smallest weights at initialization (θ0), pruned once."""

    name = "magnitude_init"
    when = AT_INIT
