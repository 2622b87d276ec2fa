"""In CI (CI=true) a test skipped for a missing dependency fails (conftest.py)."""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _probe(ci: str) -> str:
    env = {**os.environ, "CI": ci, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider",
                           "-o", "addopts=", os.path.join(HERE, "ci_probe.py")],
                          cwd=os.path.dirname(HERE), env=env, capture_output=True, text=True,
                          timeout=300)
    return done.stdout


def test_skips_for_missing_modules_and_datasets_fail_in_ci():
    out = _probe("true")
    summary = out.strip().splitlines()[-1]
    assert "2 failed" in summary and "2 skipped" in summary, out
    assert "FAILED tests/ci_probe.py::test_missing_module" in out
    assert "FAILED tests/ci_probe.py::test_missing_dataset" in out
    assert "CI=true: skipped for a missing dependency" in out
