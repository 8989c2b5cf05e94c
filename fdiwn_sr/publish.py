"""Build the Hub repository that ``load_model`` downloads from, and upload it.

The folder built is exactly what goes up: one safetensors per scale, named and
hashed as the manifest says (so a published file is a verified file), a
``config.json`` and a model card. A dry run stops after building it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from . import checkpoints
from .atomic import atomic_write_bytes
from .manifest import ModelEntry, load_manifest
from .weights import convert_verified, fetch_upstream

__all__ = ["build_repo", "model_card", "publish"]

AUTHORS_REPO = "https://github.com/24wenjie-li/FDIWN"
PAPER = "https://arxiv.org/abs/2112.08655"
CITATION = """@inproceedings{gao2022fdiwn,
  title     = {Feature Distillation Interaction Weighting Network for Lightweight Image Super-Resolution},
  author    = {Gao, Guangwei and Li, Wenjie and Li, Juncheng and Wu, Fei and Lu, Huimin and Yu, Yi},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2022}
}"""

PathLike = str | os.PathLike[str]


def _entries(variant: str) -> list[ModelEntry]:
    manifest = load_manifest()
    entries = sorted((e for e in manifest.models.values() if e.variant == variant), key=lambda e: e.scale)
    if not entries:
        manifest.entry(4, variant)  # raises the "no pretrained weights" error
    return entries


def _config(entries: list[ModelEntry]) -> dict[str, object]:
    from . import __version__

    return {
        "library_name": "fdiwn-sr",
        "fdiwn_sr_version": __version__,
        "architecture": "FDIWN",
        "format": f"{checkpoints.FORMAT} safetensors v{checkpoints.FORMAT_VERSION} (training form)",
        "paper": PAPER,
        "authors_repository": AUTHORS_REPO,
        "models": {
            e.name: {
                "filename": e.hub.filename,
                "variant": e.variant,
                "scale": e.scale,
                "params": e.params,
                "sha256": e.sha256,
                "size": e.size,
                "converted_from": {"url": e.upstream.url, "sha256": e.upstream.sha256},
                "metrics": e.metrics,
            }
            for e in entries
        },
    }


def model_card(repo_id: str, entries: list[ModelEntry]) -> str:
    files = "\n".join(
        f"| `{e.hub.filename}` | x{e.scale} | {e.params:,} | `{e.sha256}` | `{e.upstream.sha256}` |" for e in entries
    )
    metrics = "\n".join(
        f"| x{e.scale} | {e.metrics['set5_psnr_y']:.4f} / {e.metrics['set5_ssim_y']:.4f} | "
        f"{e.metrics['paper_set5_psnr_y']:.2f} / {e.metrics['paper_set5_ssim_y']:.4f} |"
        for e in entries
    )
    licenses = sorted({e.license for e in entries})
    last = entries[-1]
    return f"""---
license: other
license_name: fdiwn-authors-no-license
license_link: {AUTHORS_REPO}
library_name: fdiwn-sr
pipeline_tag: image-to-image
tags:
- super-resolution
- image-super-resolution
- fdiwn
- safetensors
---

# FDIWN pretrained weights ({", ".join(f"x{e.scale}" for e in entries)})

Weights of **FDIWN**, the lightweight super-resolution network of Gao et al.,
*Feature Distillation Interaction Weighting Network for Lightweight Image
Super-Resolution* (AAAI 2022, [{PAPER}]({PAPER})).

They are the checkpoints the authors released in [{AUTHORS_REPO}]({AUTHORS_REPO}),
converted to safetensors by [fdiwn-sr](https://pypi.org/project/fdiwn-sr/) without
retraining or fine-tuning: the same numbers in a safer container. All credit for
the network and its training belongs to the authors.

## Use

```python
from huggingface_hub import hf_hub_download
from fdiwn_sr import load_model

path = hf_hub_download("{repo_id}", "{last.hub.filename}")
upscaler = load_model(scale={last.scale}, weights=path)
```

`load_model(scale={last.scale})` alone downloads the same file and checks its sha256.

## Files

| file | scale | parameters | sha256 | converted from the authors' `.pt` (sha256) |
|---|---|---|---|---|
{files}

## Results: Set5, PSNR-Y (dB) / SSIM-Y

| scale | these weights | paper |
|---|---|---|
{metrics}

Measured on the Y channel (ITU-R BT.601), `scale` pixels cropped from each
border, MATLAB-bicubic low-resolution inputs; the paper's numbers come from MATLAB.

## License

{chr(10).join(licenses)}

## Citation

```bibtex
{CITATION}
```
"""


def build_repo(
    out_dir: PathLike, repo_id: str, *, source: PathLike | None = None, variant: str = "fdiwn"
) -> list[Path]:
    """Write the repository's files into an empty ``out_dir``.

    The authors' checkpoints come from ``source`` (``FDIWNx{scale}.pt``) or are
    downloaded from their upstream URLs; either way both they and the converted
    files must match the manifest.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"output folder {out} is not empty: the Hub repository is built into an empty folder")
    entries = _entries(variant)
    files = []
    for e in entries:
        dst = out / e.hub.filename
        if source is None:
            files.append(fetch_upstream(e, dst))
        else:
            pt = Path(source) / f"FDIWNx{e.scale}.pt"
            if not pt.is_file():
                raise FileNotFoundError(f"authors' checkpoint not found: {pt} (--source holds FDIWNx{{2,3,4}}.pt)")
            files.append(convert_verified(pt, e, dst))
    for name, text in (
        ("config.json", json.dumps(_config(entries), indent=2) + "\n"),
        ("README.md", model_card(repo_id, entries)),
    ):
        atomic_write_bytes(out / name, text.encode())
        files.append(out / name)
    return files


def publish(
    repo_id: str,
    *,
    source: PathLike | None = None,
    dry_run: PathLike | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    variant: str = "fdiwn",
) -> str:
    """Build the repository and upload it as one commit; with ``dry_run`` only build it there.

    Returns the folder (dry run) or the commit URL.
    """
    if dry_run is not None:
        build_repo(dry_run, repo_id, source=source, variant=variant)
        return str(dry_run)
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="fdiwn-sr-publish-") as tmp:
        files = build_repo(tmp, repo_id, source=source, variant=variant)
        api.create_repo(repo_id, exist_ok=True)
        info = api.create_commit(
            repo_id,
            operations=[CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=str(f)) for f in files],
            commit_message=f"FDIWN {variant} weights ({', '.join(f.name for f in files)})",
            revision=revision,
        )
    return str(info.commit_url)
