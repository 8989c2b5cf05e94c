"""The training loop: L1 (plus optional distillation), Adam, checkpoints that resume exactly.

A run folder holds ``config.toml`` (the resolved configuration), ``log.jsonl``,
``checkpoints/last.pt`` (everything needed to resume), ``model.safetensors``
(the latest weights) and ``best.safetensors`` (the best validation PSNR-Y);
the ``.safetensors`` files load with ``fdiwn_sr.load_model(weights=...)``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import checkpoints
from ..atomic import atomic_write_bytes
from ..errors import CheckpointError
from ..metrics import psnr_y, ssim_y
from ..network import FDIWN, VARIANTS, count_parameters
from ..weights import resolve_weights
from . import distributed
from .config import PRETRAINED, TrainConfig
from .data import PatchDataset, PatchSampler, ValImage, load_validation

__all__ = ["EMA", "TrainResult", "initial_model", "read_training_checkpoint", "train", "validate"]

CHECKPOINT_FORMAT = "fdiwn-sr-train"
CHECKPOINT_VERSION = 1


@dataclass
class TrainResult:
    """Where a run ended and what it wrote (the files are written by rank 0 only).

    Args:
        run_dir: The run folder (``out_dir``).
        step: Steps trained in all, over every invocation.
        checkpoint: The resumable checkpoint, ``RUN/checkpoints/last.pt``.
        weights: The latest weights, ``RUN/model.safetensors``.
        best_weights: ``RUN/best.safetensors``, the weights with the best validation PSNR-Y;
            None without validation.
        best_psnr_y: That PSNR-Y in dB; None without validation.
        validations: This invocation's validation results (``step``, ``psnr_y``, ``ssim_y``).
    """

    run_dir: Path
    step: int
    checkpoint: Path
    weights: Path
    best_weights: Path | None
    best_psnr_y: float | None
    validations: list[dict[str, Any]] = field(default_factory=list)


def _weights_path(spec: str, scale: int) -> Path:
    """``"pretrained"`` is the released fdiwn for the scale (cache, then download); anything else a file."""
    return resolve_weights(scale, "fdiwn") if spec == PRETRAINED else Path(spec)


def initial_model(config: TrainConfig) -> FDIWN:
    """A fresh network, or one started from ``config.init``.

    ``"pretrained"`` means the released ``fdiwn`` weights for the scale. A file
    with more FSWG groups than the variant (``fdiwn`` weights for ``fdiwn-m``)
    gives the variant its first groups plus head and tail.

    Args:
        config: The run's configuration; ``scale``, ``variant``, ``init`` and ``seed`` are used.

    Returns:
        The network in its training form, on the CPU.

    Raises:
        FileNotFoundError: If ``config.init`` names a file that does not exist.
        CheckpointError: If the file is not FDIWN weights of that scale.
        WeightsError: If ``"pretrained"`` weights cannot be obtained.
    """
    if config.init is None:
        torch.manual_seed(config.seed)
        return FDIWN(config.scale, config.variant)
    state = checkpoints.read_checkpoint(_weights_path(config.init, config.scale))
    groups = VARIANTS[config.variant].groups
    state = {k: v for k, v in state.items() if not (k.startswith("fswg.") and int(k.split(".")[1]) >= groups)}
    return checkpoints.build(state, config.scale, config.variant)


@torch.no_grad()
def validate(model: FDIWN, images: list[ValImage], device: torch.device | str = "cpu") -> dict[str, Any]:
    """PSNR-Y / SSIM-Y of whole images by the paper's protocol (8-bit output, ``scale`` pixels cropped).

    Args:
        model: The network (training or folded form); its train/eval mode is restored afterwards.
        images: Validation images, from [`load_validation`][fdiwn_sr.training.load_validation].
        device: Where to run the network (it must already be there).

    Returns:
        ``{"psnr_y": mean, "ssim_y": mean, "per_image": {name: {"psnr_y": ..., "ssim_y": ...}}}``.
    """
    was_training = model.training
    model.eval()
    per_image = {}
    try:
        for im in images:
            x = torch.from_numpy(im.lr).permute(2, 0, 1)[None].to(device).float()
            sr = model(x)[0].clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
            per_image[im.name] = {
                "psnr_y": psnr_y(sr, im.hr, crop=model.scale),
                "ssim_y": ssim_y(sr, im.hr, crop=model.scale),
            }
    finally:
        model.train(was_training)
    return {
        "psnr_y": float(np.mean([v["psnr_y"] for v in per_image.values()])),
        "ssim_y": float(np.mean([v["ssim_y"] for v in per_image.values()])),
        "per_image": per_image,
    }


class EMA:
    """Exponential moving average of the weights; validated and exported instead of the raw ones."""

    def __init__(self, model: FDIWN, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: FDIWN) -> None:
        for e, p in zip(self.model.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1.0 - self.decay)


class _Log:
    """JSON lines (one event per line, appended, so a resumed run continues the file) and TensorBoard."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.path = run_dir / "log.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def __call__(self, event: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "step": step, "time": round(time.time(), 3), **values}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, float):
                    self.tb.add_scalar(f"{event}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.min_lr)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def read_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A resumable checkpoint, loaded safely (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign files fail in many ways inside torch
        raise CheckpointError(f"{path} is not a readable training checkpoint: {type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an fdiwn-sr training checkpoint")
    return state


class _Run:
    def __init__(self, config: TrainConfig, ctx: distributed.DistContext, resume: bool | str | os.PathLike[str]):
        if config.train_hr is None:
            raise ValueError("train_hr (a folder of training images) is required")
        self.config, self.ctx, self.device = config, ctx, ctx.device
        self.run_dir = Path(config.out_dir)
        self.checkpoint_path = self.run_dir / "checkpoints" / "last.pt"
        resume_from = self._resume_path(resume)
        self.step, self.best = 0, None
        self.validations: list[dict[str, Any]] = []
        self.amp = config.amp and self.device.type == "cuda"

        self.model = FDIWN(config.scale, config.variant) if resume_from else initial_model(config)
        self.model.to(self.device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = _scheduler(self.optimizer, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.ema = EMA(self.model, config.ema) if config.ema > 0 else None
        self.teacher = None
        if config.teacher is not None:
            teacher = _weights_path(config.teacher, config.scale)
            self.teacher = checkpoints.load_network(teacher, scale=config.scale).fold().to(self.device)
        if resume_from:
            self._restore(read_training_checkpoint(resume_from))
        self.ddp = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if ctx.distributed
            else self.model
        )

        dataset = PatchDataset(
            config.train_hr,
            config.scale,
            config.patch_size,
            lr_dir=config.train_lr,
            cache_dir=config.cache_dir,
            augment=config.augment,
            seed=config.seed,
        )
        sampler = PatchSampler(
            len(dataset),
            config.batch_size,
            rank=ctx.rank,
            world_size=ctx.world_size,
            seed=config.seed,
            start_step=self.step,
        )
        self.loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=sampler,
            num_workers=config.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            persistent_workers=config.workers > 0,
            generator=torch.Generator().manual_seed(config.seed),  # leave the global RNG alone
        )
        self.val_images = (
            load_validation(config.val_hr, config.scale, config.val_lr) if config.val_hr and ctx.is_main else []
        )
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.run_dir / "config.toml", config.to_toml().encode())
        self.log = _Log(self.run_dir, ctx.is_main, config.tensorboard)
        self.log(
            "resume" if resume_from else "start",
            self.step,
            world_size=ctx.world_size,
            device=str(self.device),
            parameters=count_parameters(self.model),
            train_images=len(dataset),
        )

    def _resume_path(self, resume: bool | str | os.PathLike[str]) -> Path | None:
        """``True`` continues the run folder's checkpoint if there is one (so a restarted job
        can repeat its command line); a path must exist. A fresh run never overwrites one."""
        if resume is True:
            return self.checkpoint_path if self.checkpoint_path.is_file() else None
        if resume is not False:
            path = Path(resume)
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint to resume not found: {path}")
            return path
        if self.checkpoint_path.is_file():
            raise ValueError(f"{self.run_dir} already holds a checkpoint: resume it or choose another out_dir")
        return None

    def _state(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "best_psnr_y": self.best,
            "config": asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.model.state_dict() if self.ema else None,
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda},
        }

    def _restore(self, state: dict[str, Any]) -> None:
        saved = state["config"]
        for key in ("scale", "variant"):
            if saved[key] != getattr(self.config, key):
                raise ValueError(
                    f"the checkpoint was trained with {key}={saved[key]!r}, not {getattr(self.config, key)!r}"
                )
        if (state["ema"] is None) != (self.ema is None):
            raise ValueError("the checkpoint and the configuration disagree on ema: keep the ema setting when resuming")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema:
            self.ema.model.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step, self.best = state["step"], state["best_psnr_y"]

    @property
    def _export_model(self) -> FDIWN:
        return self.ema.model if self.ema else self.model

    def _save_checkpoint(self) -> None:
        buf = io.BytesIO()
        torch.save(self._state(), buf)
        atomic_write_bytes(self.checkpoint_path, buf.getvalue())
        self.log("checkpoint", self.step, path=str(self.checkpoint_path))

    def _export(self, name: str) -> Path:
        path = self.run_dir / name
        checkpoints.save_safetensors(self._export_model, path, extra={"trained_steps": str(self.step)})
        return path

    def _validate(self) -> None:
        result = validate(self._export_model, self.val_images, self.device)
        improved = self.best is None or result["psnr_y"] > self.best
        if improved:
            self.best = result["psnr_y"]
            self._export("best.safetensors")
        record = {"step": self.step, "psnr_y": result["psnr_y"], "ssim_y": result["ssim_y"], "best": improved}
        self.validations.append(record)
        self.log("val", self.step, psnr_y=result["psnr_y"], ssim_y=result["ssim_y"], best=improved)

    def _train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lr = lr.to(self.device, non_blocking=True).float()
        hr = hr.to(self.device, non_blocking=True).float()
        autocast = torch.autocast(self.device.type, dtype=torch.float16) if self.amp else contextlib.nullcontext()
        with autocast:
            sr = self.ddp(lr)
            l1 = F.l1_loss(sr.float(), hr)
            distill = torch.zeros((), device=self.device)
            if self.teacher is not None:
                with torch.no_grad():
                    target = self.teacher(lr).float()
                distill = F.l1_loss(sr.float(), target)
            loss = l1 + self.config.distill_weight * distill
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema:
            self.ema.update(self.model)
        return l1.detach(), distill.detach()

    def run(self) -> TrainResult:
        cfg, main = self.config, self.ctx.is_main
        if main and self.val_images and self.step == 0 and cfg.val_at_start:
            self._validate()
        stop = cfg.steps if cfg.stop_after is None else min(cfg.steps, self.step + cfg.stop_after)
        sums = torch.zeros(2, device=self.device)
        count = 0
        bar = tqdm(total=cfg.steps, initial=self.step, unit="step", disable=not (cfg.progress and main))
        batches = iter(self.loader)
        try:
            while self.step < stop:
                l1, distill = self._train_step(*next(batches))
                sums += torch.stack([l1, distill])
                count += 1
                self.step += 1
                bar.update()
                if self.step % cfg.log_every == 0 or self.step == stop:
                    mean_l1 = distributed.mean_across(sums[0] / count, self.ctx)
                    values = {"loss": mean_l1, "lr": self.scheduler.get_last_lr()[0]}
                    if self.teacher is not None:
                        values["distill"] = distributed.mean_across(sums[1] / count, self.ctx)
                    self.log("train", self.step, **values)
                    bar.set_postfix(loss=f"{mean_l1:.3f}")
                    sums.zero_()
                    count = 0
                if main and self.val_images and (self.step % cfg.val_every == 0 or self.step == stop):
                    self._validate()
                if main and (self.step % cfg.checkpoint_every == 0 or self.step == stop):
                    self._save_checkpoint()
            weights = self._export("model.safetensors") if main else self.run_dir / "model.safetensors"
            self.log("end", self.step, weights=str(weights))
        finally:
            bar.close()
            self.log.close()
        distributed.barrier(self.ctx)
        best = self.run_dir / "best.safetensors"
        return TrainResult(
            run_dir=self.run_dir,
            step=self.step,
            checkpoint=self.checkpoint_path,
            weights=weights,
            best_weights=best if self.best is not None else None,
            best_psnr_y=self.best,
            validations=self.validations,
        )


def train(config: TrainConfig, *, resume: bool | str | os.PathLike[str] = False) -> TrainResult:
    """Train (or fine-tune) FDIWN as ``config`` says; under ``torchrun`` each process calls this.

    Writes ``config.toml``, ``log.jsonl``, ``checkpoints/last.pt``, ``model.safetensors`` and
    (with validation) ``best.safetensors`` into ``config.out_dir``. A resumed run equals the
    uninterrupted one.

    Args:
        config: The run, from [`resolve_config`][fdiwn_sr.training.resolve_config] or built directly.
        resume: False starts a new run (refused if the run folder holds a checkpoint); True
            continues the run folder's checkpoint if there is one, else starts; a path resumes
            that checkpoint.

    Returns:
        Where the run ended and what it wrote.

    Raises:
        TypeError: If ``config`` is not a [`TrainConfig`][fdiwn_sr.training.TrainConfig].
        ValueError: If ``train_hr`` is missing, a new run would overwrite a checkpoint, the
            checkpoint disagrees with ``config`` (scale, variant, EMA), or no image is usable.
        FileNotFoundError: If a folder or the checkpoint to resume does not exist.
        CheckpointError: If ``init``, ``teacher`` or the checkpoint to resume is not readable as one.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    ctx = distributed.setup(config.device)
    previous = torch.are_deterministic_algorithms_enabled()
    # cuBLAS is deterministic only with a fixed workspace; set for the run (unless the user set it), then undone.
    workspace = config.deterministic and ctx.device.type == "cuda" and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    if workspace:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        return _Run(config, ctx, resume).run()
    finally:
        torch.use_deterministic_algorithms(previous)
        if workspace:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        distributed.teardown(ctx)
