"""Upscale a folder on a Ray cluster: one model per actor, outputs named as the CLI names them.

    pip install 'fdiwn-sr[ray]'
    python examples/ray_batch.py photos/ photos_x4/                      # a local Ray instance
    python examples/ray_batch.py s3-mounted/photos/ out/ --address auto  # the cluster this node belongs to

Outputs that exist are skipped, so running it again resumes; unreadable files
are listed with the reason instead of failing the job.
"""

from __future__ import annotations

import argparse
import json

import ray

from fdiwn_sr.ray import upscale_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", help="image files, folders or globs (on storage every node sees)")
    p.add_argument("output", help="output folder")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="safetensors file (default: the pretrained weights, cached per node)")
    p.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    args = p.parse_args()

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        result = upscale_dataset(args.inputs, args.output, args.scale, weights=args.weights)
    finally:
        ray.shutdown()
    print(f"written: {len(result.written)}, skipped (already there): {len(result.skipped)}")
    print(f"errors: {len(result.errors)}", *(f"({e['path']}: {e['reason']})" for e in result.errors))
    if result.errors:
        print(json.dumps(result.errors, indent=1))


if __name__ == "__main__":
    main()
