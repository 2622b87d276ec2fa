"""Probe for tests/test_ci_skips.py (not collected by the suite itself):
one skip per kind the CI rule tells apart."""

import pytest


def test_missing_module():
    pytest.importorskip("keras_lottery_no_such_module")


def test_missing_dataset():
    pytest.skip("needs real Fashion-MNIST: apt-get install dataset-fashion-mnist")


def test_other_suite():
    pytest.importorskip("keras_lottery_no_such_module", reason="needs it (the torch suite has it)")


def test_not_a_dependency():
    pytest.skip("the presets run on the TensorFlow backend")
