"""benchmarks/speed.py runs end to end (tiny sizes, no timing asserted) and rewrites only its own section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "speed.py"


def test_speed_benchmark_writes_its_section_and_keeps_the_prose(reference_dir: Path, tmp_path):
    doc = tmp_path / "performance.md"
    begin, end = "<!-- speed.py results: begin -->", "<!-- speed.py results: end -->"
    doc.write_text(f"# Performance\n\nProse above.\n\n{begin}\nold\n{end}\n\nBelow.\n")
    args = ["--checkpoints", reference_dir / "upstream-checkpoints", "--scales", "4", "--size", "64", "48"]
    args += ["--repeats", "1", "--backends", "torch-fused", "torch", "--output", doc]
    subprocess.run([sys.executable, SCRIPT, *map(str, args)], check=True, capture_output=True, text=True)
    text = doc.read_text()
    assert text.startswith("# Performance\n\nProse above.\n") and text.endswith(f"{end}\n\nBelow.\n")
    assert "old" not in text and "- CPU: " in text
    assert "### x4: 64x48 output (16x12 input)" in text
    rows = ("| training form |", "| backend torch-fused |", "| backend torch |", "| upscale() torch-fused, whole image")
    assert all(row in text for row in rows)
    assert "| dense 64-ch 3x3 conv (channels-last) |" in text
    assert "Not measured: no CUDA device" in text or "### GPU: " in text
