"""The default CPU path before and after a change, timed in lock-step: ``speed.py``'s fused measurement as an A/B.

    git worktree add /tmp/before <commit>
    python benchmarks/speed_ab.py --before /tmp/before [--scales 4 2] [--rounds 7]

Each contender lives in its own process (so each tree imports its own
``fdiwn_sr``) and builds the default CPU runner (``make_runner(..., None)``) on
the authors' checkpoint; the driver asks them for one call each per round in a
rotating order, so load that comes and goes hits them alike. Contenders:

- before: the ``--before`` tree as a library user gets it;
- after: this tree as a library user gets it (malloc left as the host set it, the runner's heap reserve);
- after, malloc tuned: this tree with ``allocator.keep_freed_memory()``, as the CLI runs.

Reports median seconds per 1280x720 output, minor page faults per call, the
ratios, and the largest difference between the trees' outputs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def contender(conn, tree: str, tune: bool, checkpoint: str, scale: int, size: tuple[int, int]) -> None:
    sys.path.insert(0, tree)
    import torch

    from fdiwn_sr.backends import make_runner
    from fdiwn_sr.checkpoints import load_network

    if tune:
        from fdiwn_sr import allocator

        assert allocator.keep_freed_memory(), "malloc could not be tuned here"
    import fdiwn_sr

    assert Path(fdiwn_sr.__file__).resolve().is_relative_to(Path(tree).resolve()), fdiwn_sr.__file__
    runner = make_runner(load_network(checkpoint, scale), torch.device("cpu"))
    w, h = size[0] // scale, size[1] // scale
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 255
    with torch.inference_mode():
        conn.send(runner(x).numpy())  # first call: warm-up, and the output compared between trees
        while conn.recv():
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            runner(x)
            seconds = time.perf_counter() - start
            conn.send((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))


def measure(before: Path, scale: int, rounds: int, checkpoints: Path, size: tuple[int, int]) -> None:
    names = {"before": (str(before), False), "after": (str(ROOT), False), "after, malloc tuned": (str(ROOT), True)}
    ctx = mp.get_context("spawn")
    pipes, outputs = {}, {}
    for name, (tree, tune) in names.items():
        parent, child = ctx.Pipe()
        ckpt = str(checkpoints / f"FDIWNx{scale}.pt")
        ctx.Process(target=contender, args=(child, tree, tune, ckpt, scale, size), daemon=True).start()
        pipes[name] = parent
        outputs[name] = parent.recv()
    times: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[int]] = {n: [] for n in names}
    order = list(names)
    load = os.getloadavg()[0]
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            pipes[name].send(True)
            seconds, minflt = pipes[name].recv()
            times[name].append(seconds)
            faults[name].append(minflt)
    for pipe in pipes.values():
        pipe.send(False)
    diff = float(abs(outputs["after"] - outputs["before"]).max())
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"\nx{scale}, {size[0]}x{size[1]} output, {rounds} rounds, load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"max |after - before| = {diff:.3g} (0..255 scale)")
    print("| contender | median s | all rounds (s) | minor faults per call (median) | before / this |")
    print("|---|---|---|---|---|")
    for name in names:
        rounds_s = ", ".join(f"{t:.3f}" for t in times[name])
        ratio = med["before"] / med[name]
        print(f"| {name} | {med[name]:.3f} | {rounds_s} | {statistics.median(faults[name]):,.0f} | {ratio:.3f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="a checkout of the commit to compare with")
    p.add_argument("--scales", type=int, nargs="+", default=[4, 2], choices=(2, 3, 4))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--size", type=int, nargs=2, default=(1280, 720), metavar=("WIDTH", "HEIGHT"))
    # Imported here, not at the top: speed.py imports this tree's fdiwn_sr, which the "before" process must not.
    from speed import machine, reference_dir

    p.add_argument("--checkpoints", type=Path, default=reference_dir() / "upstream-checkpoints")
    args = p.parse_args()
    print("\n".join(machine()))
    for scale in args.scales:
        measure(args.before, scale, args.rounds, args.checkpoints, tuple(args.size))


if __name__ == "__main__":
    main()
