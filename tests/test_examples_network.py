"""The network issue's example runs as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_convert_and_evaluate_example(reference_dir):
    r = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "convert_and_evaluate.py"),
            str(reference_dir / "upstream-checkpoints" / "FDIWNx4.pt"),
            str(reference_dir / "set5" / "x4"),
            "--scale",
            "4",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    mean = r.stdout.splitlines()[-1].split()
    assert mean[0] == "mean"
    assert abs(float(mean[1]) - 32.2169) < 0.005
