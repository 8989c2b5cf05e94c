"""Training: data, config, the loop, resume, DDP and fine-tuning, on real (Set5) pixels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from fdiwn_sr import load_model
from fdiwn_sr.checkpoints import read_checkpoint
from fdiwn_sr.cli import main as cli_main
from fdiwn_sr.errors import CheckpointError
from fdiwn_sr.manifest import load_manifest
from fdiwn_sr.training import (
    PatchDataset,
    PatchSampler,
    imresize,
    initial_model,
    load_validation,
    resolve_config,
    train,
)
from fdiwn_sr.training.config import TrainConfig, read_toml
from fdiwn_sr.training.trainer import read_training_checkpoint
from fdiwn_sr.weights import cache_path

ROOT = Path(__file__).resolve().parent.parent


# These networks see 16-pixel patches: one thread is as fast, and immune to a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(reference_dir, tmp_path_factory) -> Path:
    """Crops of Set5: train/ (96 x 96) and val/ (64 x 64), disjoint regions of the same images."""
    root = tmp_path_factory.mktemp("tiny")
    for sub in ("train", "val"):
        (root / sub).mkdir()
    for p in sorted((reference_dir / "set5" / "x2" / "HR").glob("*.png")):
        a = np.asarray(Image.open(p).convert("RGB"))
        Image.fromarray(a[20:116, 20:116]).save(root / "train" / p.name)
        Image.fromarray(a[120:184, 120:184]).save(root / "val" / p.name)
    return root


def tiny_config(tiny: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        train_hr=str(tiny / "train"),
        val_hr=str(tiny / "val"),
        scale=2,
        variant="fdiwn-m",
        patch_size=16,
        batch_size=4,
        workers=0,
        steps=40,
        lr=1e-3,
        schedule="constant",
        val_every=20,
        log_every=10,
        checkpoint_every=20,
        out_dir=str(out),
        progress=False,
    )
    return resolve_config(**{**base, **kw})


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


# --- data -------------------------------------------------------------------------------------


def test_patches_from_hr_cache_and_matlab_lr_are_identical(reference_dir, tmp_path):
    """Per-patch bicubic (with its margin), the cached whole-image LR and the MATLAB-made LR folder
    give the same patches for the same keys, flips included."""
    hr = reference_dir / "set5" / "x4" / "HR"
    kw = dict(scale=4, patch_size=20, seed=3)
    on_the_fly = PatchDataset(hr, **kw)
    cached = PatchDataset(hr, cache_dir=tmp_path / "cache", **kw)
    paired = PatchDataset(hr, lr_dir=reference_dir / "set5" / "x4" / "LR", **kw)
    for key in [(i, e) for i in range(10) for e in (0, 7)]:
        lr, hr_patch = on_the_fly[key]
        assert lr.shape == (3, 20, 20) and hr_patch.shape == (3, 80, 80) and lr.dtype == torch.uint8
        for other in (cached, paired):
            lr2, hr2 = other[key]
            assert torch.equal(lr, lr2) and torch.equal(hr_patch, hr2)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2 * 5  # decoded HR + LR per image used
    # Without flips, degrading the HR patch gives the LR patch exactly (inside the context margin) ...
    plain = PatchDataset(hr, augment=False, **kw)
    transforms = set()
    for key in [(i, 1) for i in range(12)]:
        lr_p, hr_p = (t.permute(1, 2, 0).numpy() for t in plain[key])
        assert np.array_equal(imresize(hr_p, 1 / 4)[3:-3, 3:-3], lr_p[3:-3, 3:-3])
        # ... and the augmented pair is one flip / rotation of it, the same for LR and HR.
        lr_a, hr_a = (t.permute(1, 2, 0).numpy() for t in on_the_fly[key])
        found = [t for t in DIHEDRAL if np.array_equal(t(lr_p), lr_a) and np.array_equal(t(hr_p), hr_a)]
        assert found, key
        transforms.add(found[0])
    assert len(transforms) >= 4


DIHEDRAL = [
    (lambda a, fv=fv, fh=fh, tr=tr: (lambda b: b.transpose(1, 0, 2) if tr else b)(a[:: 1 - 2 * fv, :: 1 - 2 * fh]))
    for fv in (0, 1)
    for fh in (0, 1)
    for tr in (0, 1)
]


def test_unreadable_and_small_images_are_reported_and_skipped(reference_dir, tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    good = np.asarray(Image.open(reference_dir / "set5" / "x2" / "HR" / "bird.png").convert("RGB"))
    Image.fromarray(good[:96, :96]).save(folder / "good.png")
    Image.fromarray(good[:96, :96]).save(folder / "truncated.png")
    data = (folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])  # header fine, pixels cut off
    (folder / "garbage.png").write_bytes(b"not an image at all")
    Image.fromarray(good[:20, :20]).save(folder / "small.png")
    with pytest.warns(UserWarning) as caught:
        ds = PatchDataset(folder, scale=2, patch_size=16, augment=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "garbage.png" in messages and "small.png" in messages
    assert sorted(p.name for p in ds.skipped) == ["garbage.png", "small.png"] and len(ds) == 2
    truncated = next(i for i, e in enumerate(ds.entries) if e.hr.name == "truncated.png")
    with pytest.warns(UserWarning, match="truncated.png"):
        lr, hr = ds[(truncated, 0)]  # replaced by the next readable image
    assert lr.shape == (3, 16, 16) and hr.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="no usable training images"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        PatchDataset(folder, scale=4, patch_size=48)
    with pytest.raises(FileNotFoundError):
        PatchDataset(tmp_path / "missing", scale=2)
    with pytest.warns(UserWarning) as caught:
        val = load_validation(folder, 2)
    assert sorted(v.name for v in val) == ["good", "small"]
    messages = " ".join(str(w.message) for w in caught)
    assert "garbage.png" in messages and "truncated.png" in messages


def test_paired_folders_accept_div2k_names_and_check_sizes(reference_dir, tmp_path):
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir()
    lr_dir.mkdir()
    src = reference_dir / "set5" / "x4"
    for name in ("baby", "bird"):
        (hr_dir / f"{name}.png").write_bytes((src / "HR" / f"{name}.png").read_bytes())
        (lr_dir / f"{name}x4.png").write_bytes((src / "LR" / f"{name}.png").read_bytes())
    ds = PatchDataset(hr_dir, scale=4, patch_size=16, lr_dir=lr_dir)
    assert [e.lr.name for e in ds.entries] == ["babyx4.png", "birdx4.png"]
    # An LR too large for its HR is reported, not trusted.
    Image.open(src / "HR" / "bird.png").crop((0, 0, 200, 200)).save(hr_dir / "bird.png")
    with pytest.warns(UserWarning, match="smaller than x4"):
        assert len(PatchDataset(hr_dir, scale=4, patch_size=16, lr_dir=lr_dir)) == 1


def test_patch_stream_does_not_depend_on_worker_processes(tiny):
    ds = PatchDataset(tiny / "train", scale=2, patch_size=16, seed=1)

    def batches(workers: int) -> list:
        loader = DataLoader(ds, batch_size=4, sampler=PatchSampler(len(ds), 4, seed=1), num_workers=workers)
        return [batch for _, batch in zip(range(3), loader, strict=False)]

    for (lr0, hr0), (lr2, hr2) in zip(batches(0), batches(2), strict=True):
        assert torch.equal(lr0, lr2) and torch.equal(hr0, hr2)


def test_sampler_shards_disjointly_and_resumes_mid_epoch():
    shards = [PatchSampler(10, 3, rank=r, world_size=2, seed=5) for r in (0, 1)]
    first_epoch = [k for shard in shards for _, k in zip(range(12), shard, strict=False) if k[1] == 0]
    assert len(first_epoch) == len(set(first_epoch)) == 2 * 3  # 10 // 2 // 3 = one whole batch per rank
    stream = [k for _, k in zip(range(30), PatchSampler(10, 3, seed=5), strict=False)]
    resumed = [k for _, k in zip(range(21), PatchSampler(10, 3, seed=5, start_step=3), strict=False)]
    assert resumed == stream[9:]  # 3 batches of 3 in an epoch of 10 images
    assert [i for i, e in stream if e == 0] != [i for i, e in stream if e == 1]  # reshuffled every epoch


# --- config -----------------------------------------------------------------------------------


def test_toml_then_flags_with_paths_relative_to_the_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    toml = tmp_path / "cfg" / "run.toml"
    toml.write_text('train_hr = "data/hr"\nsteps = 100\nlr = 1\nema = 0.99\ninit = "pretrained"\n')
    cfg = resolve_config(toml, steps=7, batch_size=None)
    assert cfg.train_hr == str((tmp_path / "cfg" / "data" / "hr").resolve())
    assert (cfg.steps, cfg.lr, cfg.ema, cfg.batch_size, cfg.init) == (7, 1.0, 0.99, 16, "pretrained")
    assert resolve_config(**read_toml_text(tmp_path, cfg.to_toml())) == cfg  # the saved form round-trips
    for text, error, match in [
        ("stepz = 3\n", ValueError, "stepz"),
        ('steps = "many"\n', TypeError, "steps must be a int"),
        ("steps = 0\n", ValueError, "steps must be positive"),
        ('schedule = "linear"\n', ValueError, "schedule must be one of"),
        ("steps = [\n", ValueError, "not valid TOML"),
    ]:
        toml.write_text(text)
        with pytest.raises(error, match=match):
            resolve_config(toml)
    with pytest.raises(FileNotFoundError):
        resolve_config(tmp_path / "nope.toml")


def read_toml_text(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "saved.toml"
    path.write_text(text)
    return read_toml(path)


# --- the loop ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_short_cpu_run_lowers_loss_raises_psnr_and_exports(tiny, tmp_path):
    result = train(tiny_config(tiny, tmp_path / "run"))
    log = read_log(result.run_dir)
    losses = [r["loss"] for r in log if r["event"] == "train"]
    psnr = [v["psnr_y"] for v in result.validations]
    assert [v["step"] for v in result.validations] == [0, 20, 40] and len(losses) == 4
    assert losses[-1] < 0.5 * losses[0], losses
    assert psnr[-1] > psnr[0] + 10 and psnr[-1] > 25, psnr
    assert result.best_psnr_y == max(psnr) and result.best_weights.is_file()
    assert [r["event"] for r in log][:2] == ["start", "val"] and log[-1]["event"] == "end"
    # The exported weights are the trained ones and load through the public door.
    saved = read_training_checkpoint(result.checkpoint)
    exported = load_file(result.weights)
    assert all(torch.equal(exported[k], v) for k, v in saved["model"].items())
    up = load_model(2, "fdiwn-m", weights=result.weights)
    assert up.upscale(Image.open(tiny / "val" / "bird.png")).size == (128, 128)
    assert resolve_config(result.run_dir / "config.toml") == tiny_config(tiny, tmp_path / "run")
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train(tiny_config(tiny, tmp_path / "run"))


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tiny, tmp_path):
    """Every restored piece is exercised: cosine schedule, EMA, clipping, flips, mid-epoch data position."""
    kw = dict(steps=6, schedule="cosine", ema=0.9, grad_clip=0.5, deterministic=True, val_hr=None, log_every=1)
    straight = train(tiny_config(tiny, tmp_path / "straight", **kw))
    first = train(tiny_config(tiny, tmp_path / "resumed", stop_after=3, **kw))
    assert first.step == 3
    resumed = train(tiny_config(tiny, tmp_path / "resumed", **kw), resume=True)
    assert resumed.step == 6
    a, b = read_training_checkpoint(straight.checkpoint), read_training_checkpoint(resumed.checkpoint)
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.allclose(v, b[part][k], rtol=0, atol=1e-6), (part, k)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6
    moved = read_training_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["model"]
    assert any(not torch.equal(moved[k], v) for k, v in initial_model(tiny_config(tiny, tmp_path)).state_dict().items())
    events = [(r["event"], r["step"]) for r in read_log(tmp_path / "resumed")]
    assert ("resume", 3) in events and [s for e, s in events if e == "train"] == [1, 2, 3, 4, 5, 6]
    # Resuming under another model is refused.
    with pytest.raises(ValueError, match="scale=2"):
        train(tiny_config(tiny, tmp_path / "resumed", **{**kw, "steps": 8}, scale=4), resume=True)


def test_cli_train_with_toml_and_flags(tiny, tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text(
        f'train_hr = "{tiny / "train"}"\nscale = 2\nvariant = "fdiwn-m"\npatch_size = 16\nbatch_size = 2\n'
        'workers = 0\nsteps = 50\nprogress = false\nout_dir = "out"\n'
    )
    assert cli_main(["train", "--config", str(toml), "--steps", "2", "--no-augment"]) == 0
    saved = read_toml(tmp_path / "out" / "config.toml")
    assert saved["steps"] == 2 and saved["augment"] is False and saved["out_dir"] == str(tmp_path / "out")
    assert "step 2: weights" in capsys.readouterr().out
    assert cli_main(["train", "--config", str(toml), "--steps", "3", "--resume"]) == 0
    assert read_training_checkpoint(tmp_path / "out" / "checkpoints" / "last.pt")["step"] == 3
    assert cli_main(["train", "--steps", "2"]) == 2
    assert "train_hr" in capsys.readouterr().err
    weights = str(tmp_path / "out" / "model.safetensors")
    assert cli_main(["train", "--config", str(toml), "--resume", weights]) == 2
    assert "training checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes_write_one_checkpoint(tiny, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "fdiwn_sr", "train", "--train-hr", str(tiny / "train"), "--val-hr", str(tiny / "val"),
        "--scale", "2", "--variant", "fdiwn-m", "--patch-size", "16", "--batch-size", "2", "--workers", "0",
        "--steps", "4", "--log-every", "1", "--val-every", "100", "--no-val-at-start", "--device", "cpu",
        "--no-progress", "--out-dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]
    state = read_training_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 4
    log = read_log(out)
    assert log[0]["event"] == "start" and log[0]["world_size"] == 2
    assert [r["step"] for r in log if r["event"] == "train"] == [1, 2, 3, 4]  # one writer, not two
    assert [r["event"] for r in log].count("val") == 1 and [r["event"] for r in log].count("end") == 1
    assert not list(out.glob(".*.tmp")) and not list((out / "checkpoints").glob(".*.tmp"))
    load_model(2, "fdiwn-m", weights=out / "model.safetensors")


# --- fine-tuning ------------------------------------------------------------------------------


@pytest.mark.slow
def test_finetune_from_authors_x4_starts_at_their_psnr_and_keeps_it(reference_dir, authors_pt, tmp_path):
    expected = json.loads((reference_dir / "expected_metrics.json").read_text())["x4"]
    set5 = reference_dir / "set5" / "x4" / "HR"
    cfg = resolve_config(
        scale=4, init=str(authors_pt(4)), train_hr=str(set5), val_hr=str(set5), patch_size=16, batch_size=2,
        workers=0, steps=3, lr=1e-6, schedule="constant", val_every=3, out_dir=str(tmp_path / "ft"), progress=False,
    )  # fmt: skip
    result = train(cfg)  # validation LR is made by imresize from Set5 HR
    start, end = result.validations[0], result.validations[-1]
    assert (start["step"], end["step"]) == (0, 3)
    assert start["psnr_y"] == pytest.approx(expected["set5_mean_psnr_y"], abs=0.01)
    assert start["ssim_y"] == pytest.approx(expected["set5_mean_ssim_y"], abs=1e-4)
    assert end["psnr_y"] > start["psnr_y"] - 0.1
    exported = read_checkpoint(result.weights)
    authors = read_checkpoint(authors_pt(4))
    assert any(not torch.equal(exported[k], authors[k]) for k in authors)  # it did train
    up = load_model(4, weights=result.weights)
    hr = np.asarray(Image.open(set5 / "bird.png").convert("RGB"))
    sr = np.asarray(up.upscale(Image.open(reference_dir / "set5" / "x4" / "LR" / "bird.png")))
    from fdiwn_sr.metrics import psnr_y

    assert psnr_y(sr, hr, crop=4) == pytest.approx(expected["per_image"]["bird"]["psnr_y"], abs=0.1)


def test_fdiwn_m_from_pretrained_fdiwn_groups_with_distillation(tiny, converted, authors_pt, tmp_path, monkeypatch):
    """``"pretrained"`` goes through the weights cache; fdiwn-m takes fdiwn's first two groups."""
    monkeypatch.setenv("FDIWN_SR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FDIWN_SR_OFFLINE", "1")
    target = cache_path(load_manifest().entry(2, "fdiwn"), tmp_path / "home")
    target.parent.mkdir(parents=True)
    target.write_bytes(converted[2].read_bytes())
    cfg = tiny_config(
        tiny, tmp_path / "m", init="pretrained", teacher="pretrained", steps=2, lr=1e-5, log_every=1, val_hr=None
    )
    model = initial_model(cfg)
    full = read_checkpoint(converted[2])
    mine = model.state_dict()
    assert model.variant == "fdiwn-m" and not any(k.startswith("fswg.2.") for k in mine)
    assert all(torch.equal(v, full[k]) for k, v in mine.items())  # groups 0 and 1, head and tail
    result = train(cfg)
    plain = train(tiny_config(tiny, tmp_path / "plain", init="pretrained", steps=2, lr=1e-5, log_every=1, val_hr=None))
    taught = [r for r in read_log(result.run_dir) if r["event"] == "train"]
    alone = [r for r in read_log(plain.run_dir) if r["event"] == "train"]
    assert len(taught) == 2 and all(r["distill"] > 1 for r in taught) and "distill" not in alone[0]
    assert taught[0]["loss"] == pytest.approx(alone[0]["loss"], rel=1e-6)  # same start, same batch: same L1
    a, b = read_checkpoint(result.weights), read_checkpoint(plain.weights)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the teacher's term moved the weights
    with pytest.raises(CheckpointError, match="x2"):
        initial_model(tiny_config(tiny, tmp_path, scale=4, init=str(authors_pt(2))))
    with pytest.raises(CheckpointError, match="fdiwn-m"):
        initial_model(tiny_config(tiny, tmp_path, variant="fdiwn", init=str(result.weights)))


@pytest.mark.slow
def test_example_finetune_runs(reference_dir, authors_pt, tiny, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, str(ROOT / "examples" / "finetune.py"), "--train-hr", str(tiny / "train"),
        "--val-hr", str(tiny / "val"), "--scale", "2", "--weights", str(authors_pt(2)), "--out", str(tmp_path / "ft"),
        "--steps", "2", "--patch-size", "16", "--batch-size", "2",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 0: validation PSNR-Y" in proc.stdout and "step 2: validation PSNR-Y" in proc.stdout
    assert (tmp_path / "ft" / "best.safetensors").is_file()
