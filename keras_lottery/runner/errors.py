"""Errors a lottery search reports to its user (the CLI prints them in one line)."""


class MonitorError(ValueError):
    """`monitor` names a key that evaluation never produces."""


class BranchFailedError(RuntimeError):
    """Training or evaluating one branch failed (e.g. data that does not fit
    the model); the message names the round and branch and keeps the
    original error's message."""


class DivergedError(RuntimeError):
    """A branch's loss became NaN or infinite and `on_divergence="stop"`."""
