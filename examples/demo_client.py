"""Call a running demo (``fdiwn-sr serve``) from a script: its ``upscale`` endpoint, through gradio_client.

    fdiwn-sr serve &                       # http://127.0.0.1:7860/ by default
    python examples/demo_client.py examples/data/sample.png --scale 2 -o sample_x2.png

The file comes back as the demo wrote it: PNG at the input's bit depth, alpha kept.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from gradio_client import Client, handle_file
from PIL import Image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", type=Path)
    p.add_argument("--url", default="http://127.0.0.1:7860/", help="where the demo runs")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=4)
    p.add_argument("-o", "--output", type=Path, default=Path("upscaled.png"))
    args = p.parse_args()

    client = Client(args.url, verbose=False)
    result = client.predict(handle_file(str(args.image)), args.scale, api_name="/upscale")
    shutil.move(result, args.output)
    with Image.open(args.output) as im:
        print(f"wrote {args.output} ({im.width} x {im.height})")


if __name__ == "__main__":
    main()
