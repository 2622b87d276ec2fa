"""The fault campaign's quick mode (benchmarks/faults.py --quick) holds."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_quick_fault_campaign_holds():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "faults.py"),
                           "--quick"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    lines = done.stdout.splitlines()
    total = next(line for line in lines if line.startswith("total")).split()
    assert done.returncode == 0 and total[-1] == "0", done.stdout + done.stderr[-2000:]
    assert int(total[1]) >= 10 and {"kill", "concurrent", "damage", "inputs"} <= {
        line.split()[0] for line in lines[2:]}
