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


FAKE_AUTHORS_MODEL = '''
from torch import nn

from fdiwn_sr.checkpoints import build, from_authors


class MODEL(nn.Module):
    """Stands in for the authors' class: takes their checkpoint, runs our training form."""

    def __init__(self, args):
        super().__init__()
        self.net = None

    def load_state_dict(self, state, strict=True):
        self.net = build(from_authors(state), 4)

    def forward(self, x):
        return self.net(x)
'''


def test_speed_benchmark_runs_the_authors_code_in_its_own_processes(reference_dir: Path, tmp_path):
    package = tmp_path / "code" / "model"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "FDIWNx4.py").write_text(FAKE_AUTHORS_MODEL)
    args = ["--checkpoints", reference_dir / "upstream-checkpoints", "--scales", "4", "--size", "64", "48"]
    args += ["--repeats", "2", "--backends", "torch", "--authors-code", tmp_path / "code", "--no-write"]
    out = subprocess.run([sys.executable, SCRIPT, *map(str, args)], check=True, capture_output=True, text=True)
    rows = {line.split(" | ")[0].strip("| "): line for line in out.stdout.splitlines() if line.startswith("| ")}
    for name in ("authors' code", "authors' code, malloc tuned as ours"):
        assert rows[name].endswith("| identical |"), rows[name]  # the same model in a child process
    assert "| 1.00x |" in rows["authors' code"]
    assert "vs authors' code" in out.stdout
