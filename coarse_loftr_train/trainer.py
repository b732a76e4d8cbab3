"""Training loop: supervised coarse + refinement losses and knowledge distillation.

One process per device; ``torchrun --nproc_per_node N`` (or several nodes) runs the same
loop under DistributedDataParallel, each process drawing its share of every epoch's
pairs. Settings are a nested dict (``DEFAULTS``) overridden by a YAML file and by
``section.key=value`` command-line overrides (values parsed as YAML).

Outputs under ``output``: ``checkpoints/last.pt`` every epoch (``--resume`` continues
from it), ``checkpoints/best.pt`` (best validation homography AUC@5), ``log.jsonl``
(one JSON line per logged step and per validation) and TensorBoard logs in ``tensorboard/``
when the ``tensorboard`` package is installed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .config import ModelConfig, get_config
from .datasets import (
    BlendedMVSPairs,
    HomographyPairs,
    HomographySampling,
    PhotometricAugmentation,
    RandomPairs,
    collate,
    list_images,
    split_images,
)
from .forward_motion import ForwardMotionPairs, ForwardMotionSampling
from .label_pairs import MixedPairs, TeacherLabelPairs
from .losses import LossWeights, coarse_loss, distillation_loss, log_dual_softmax, match_metrics, refinement_loss
from .model import CoarseLoFTR

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "output": "runs/default",
    "model": {
        "base": "student",  # a shipped config to start from
        "input_width": 320,
        "input_height": 240,
        "refine_window": 5,
        "stage_blocks": None,  # ResNet blocks per stage; None keeps the base config's
        "layer_names": None,  # transformer layers in order, e.g. [self, cross]; None keeps the base config's
        "init": None,  # optional checkpoint whose weights start the run
        # BatchNorm layers stay in eval mode: their running statistics keep the init checkpoint's
        # values and normalise every batch (their scale and bias still learn). For fine-tunes.
        "freeze_batchnorm": False,
    },
    "teacher": {
        "checkpoint": None,  # e.g. ../shared/weights/coarse_loftr_trt_student.pt
        "config": None,  # config name when the checkpoint stores none
    },
    "data": {
        "kind": "homography",  # homography | blendedmvs
        "images": "../shared/data/train_images",
        "holdout": 100,  # the last N images (by name) are kept for validation
        "pairs_per_epoch": 2000,
        "photometric": True,
        "rotation": 25.0,
        "scale": [0.7, 1.4],
        "perspective": 0.12,
        "translation": 0.15,
        "crop_scale": [0.6, 1.0],
        "blendedmvs_root": None,
        "depth_tolerance": 0.05,
        # Cached teacher labels of real footage (`coarse-loftr label`), mixed into kind homography:
        # folders of label files, the share of pairs drawn from them, the crop of each view
        # (side relative to the largest crop of the model's aspect ratio), path parts to leave out, and
        # whether out-of-view partners and the teacher's unmatched keypoints mark "no match" cells.
        "labels": [],
        "labels_share": 0.5,
        "labels_crop_scale": [0.6, 1.0],
        "labels_exclude": [],
        "labels_negatives": False,
        # kind homography: a share of forward-motion pairs (forward_motion.ForwardMotionSampling)
        "forward_motion": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(ForwardMotionSampling()).items()},
    },
    "loss": dataclasses.asdict(LossWeights()),
    "optim": {
        "lr": 2e-3,
        "weight_decay": 0.01,
        "batch_size": 8,
        "accumulate": 4,  # virtual batch = batch_size * accumulate * processes
        "warmup_steps": 100,  # optimizer steps of linear warm-up
        "milestones": [20, 30, 40],  # epochs at which the learning rate is multiplied by gamma
        "gamma": 0.5,
        "grad_clip": 1.0,
    },
    "train": {
        "epochs": 50,
        "device": "auto",  # auto | cpu | cuda
        "amp": True,  # float16 autocast + gradient scaling, CUDA only
        "workers": 0,
        "threads": 0,  # torch CPU threads per process; 0 keeps torch's default
        "log_every": 10,  # optimizer steps
        "progress": True,  # a progress bar per epoch (shown on a terminal, not written into logs)
        "max_steps": 0,  # stop after this many optimizer steps in all (0: no limit); that epoch counts as finished
    },
    "validation": {
        "pairs": 100,
        "every": 1,  # epochs
        "threshold": 0.2,
        "seed": 12345,
    },
}


# --------------------------------------------------------------------------- config


def merge(base: dict, update: dict, path: str = "") -> dict:
    """Recursively merge ``update`` into a copy of ``base``; unknown keys are an error."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in base:
            raise KeyError(f"unknown setting {where!r}; known: {sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise TypeError(f"setting {where!r} must be a mapping")
            out[key] = merge(base[key], value, where + ".")
        elif isinstance(base[key], float) and isinstance(value, str):
            try:  # YAML 1.1 reads 1e-4 (no dot) as a string
                out[key] = float(value)
            except ValueError:
                raise TypeError(f"setting {where!r} must be a number, got {value!r}") from None
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict:
    """``"optim.lr=1e-3"`` -> ``{"optim": {"lr": 0.001}}`` (the value is parsed as YAML)."""
    import yaml

    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    parsed = yaml.safe_load(value) if value.strip() else None
    for part in reversed(key.strip().split(".")):
        parsed = {part: parsed}
    return parsed


def load_settings(path: str | Path | None = None, overrides: list[str] = ()) -> dict:
    """DEFAULTS <- YAML file <- overrides."""
    import yaml

    settings = copy.deepcopy(DEFAULTS)
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        settings = merge(settings, data)
    for text in overrides:
        settings = merge(settings, parse_override(text))
    return settings


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm of ``model`` in eval mode: batches are normalised with the running
    statistics, which no longer move; the affine scale and bias keep their gradients."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def model_config(settings: dict) -> ModelConfig:
    m = settings["model"]
    base = get_config(m["base"])
    blocks = tuple(m["stage_blocks"]) if m["stage_blocks"] else base.stage_blocks
    layers = tuple(m["layer_names"]) if m["layer_names"] else base.layer_names
    return dataclasses.replace(
        base,
        name=f"{base.name}-trained",
        input_width=m["input_width"],
        input_height=m["input_height"],
        refine_window=m["refine_window"],
        stage_blocks=blocks,
        layer_names=layers,
    )


_BLOCK_KEY = re.compile(r"(backbone\.layer(\d+)\.(\d+)\.)")
_LAYER_KEY = re.compile(r"(loftr_coarse\.layers\.(\d+)\.)")


def _removed_part(key: str, config: ModelConfig) -> str | None:
    """The state-dict prefix of ``key``'s ResNet block or transformer layer when ``config``
    leaves that part out (a block past ``stage_blocks``, a layer past ``layer_names``), else None."""
    if match := _BLOCK_KEY.match(key):
        stage, block = int(match[2]), int(match[3])
        return match[1] if block >= config.stage_blocks[stage - 1] else None
    if match := _LAYER_KEY.match(key):
        return match[1] if int(match[2]) >= len(config.layer_names) else None
    return None


def start_added_layers_as_identity(model: CoarseLoFTR, missing: list[str]) -> list[int]:
    """Zero the output LayerNorm of every transformer layer the init checkpoint lacks, so that a
    grown model (more ``layer_names`` than its init) starts as the model it grew from: each new
    layer returns ``x + 0``, and its gradients are not zero. Returns the indices of those layers."""
    added = sorted({int(match[2]) for key in missing if (match := _LAYER_KEY.match(key))})
    with torch.no_grad():
        for index in added:
            norm = model.loftr_coarse.layers[index].norm2
            norm.weight.zero_()
            norm.bias.zero_()
    return added


# --------------------------------------------------------------------------- pieces


class TrainingForward(nn.Module):
    """What DistributedDataParallel wraps: images -> (similarity, refinement offsets at ground truth)."""

    def __init__(self, model: CoarseLoFTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, image0: torch.Tensor, image1: torch.Tensor, cells1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        model = self.model
        batch = image0.shape[0]
        features = model.extract_features(torch.cat([image0, image1], dim=0))
        similarity = model.similarity(features[:batch], features[batch:])
        offsets = None
        if model.refinement is not None:  # offsets at every ground-truth cell pair
            cells0 = torch.arange(cells1.shape[1], device=cells1.device).expand(batch, -1)
            offsets = model.refine_matches(features[:batch].float(), features[batch:].float(), cells0, cells1.clamp(min=0))
        return similarity, offsets


def pool_similarity(similarity: torch.Tensor, grid0: tuple[int, int], grid1: tuple[int, int], factor: int) -> torch.Tensor:
    """Max-pool a teacher's ``[B, L0, L1]`` scores over ``factor x factor`` cell blocks of both images."""
    if factor == 1:
        return similarity
    batch = similarity.shape[0]
    (c0, r0), (c1, r1) = grid0, grid1
    s = similarity.reshape(batch, r0 // factor, factor, c0 // factor, factor, c1 * r1)
    s = s.amax(dim=(2, 4)).reshape(batch, -1, r1 // factor, factor, c1 // factor, factor)
    return s.amax(dim=(3, 5)).reshape(batch, (r0 // factor) * (c0 // factor), -1)


def build_datasets(settings: dict, stride: int) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset | None]:
    """(training set, validation homography set or None) from the ``data`` settings."""
    d = settings["data"]
    size = (settings["model"]["input_width"], settings["model"]["input_height"])
    photometric = PhotometricAugmentation() if d["photometric"] else None
    sampling = HomographySampling(
        crop_scale=tuple(d["crop_scale"]),
        rotation=d["rotation"],
        scale=tuple(d["scale"]),
        translation=d["translation"],
        perspective=d["perspective"],
    )
    validation = None
    train_files, holdout_files = [], []
    if d["images"]:
        train_files, holdout_files = split_images(list_images(d["images"]), d["holdout"])
    if holdout_files and settings["validation"]["pairs"] > 0:
        # Fixed warps and photometric changes, whatever the training augmentation, so that
        # validation numbers stay comparable across runs and resumed runs.
        validation = HomographyPairs(holdout_files, size, stride, settings["validation"]["pairs"], seed=settings["validation"]["seed"])
    if d["kind"] == "homography":
        common = dict(seed=settings["seed"], sampling=sampling, photometric=photometric)
        forward_motion = ForwardMotionSampling(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["forward_motion"].items()})
        if forward_motion.probability > 0:
            train = ForwardMotionPairs(train_files, size, stride, d["pairs_per_epoch"], **common, forward_motion=forward_motion)
        else:
            train = HomographyPairs(train_files, size, stride, d["pairs_per_epoch"], **common)
        if d["labels"] and d["labels_share"] > 0:
            labelled = TeacherLabelPairs(
                d["labels"], size, stride, d["pairs_per_epoch"], seed=settings["seed"], crop_scale=tuple(d["labels_crop_scale"]),
                photometric=photometric, exclude=d["labels_exclude"], negatives=bool(d["labels_negatives"]),
            )
            share = float(d["labels_share"])
            train = MixedPairs([train, labelled], [1.0 - share, share], d["pairs_per_epoch"], seed=settings["seed"]) if share < 1 else labelled
    elif d["kind"] == "blendedmvs":
        if not d["blendedmvs_root"]:
            raise ValueError("data.kind=blendedmvs needs data.blendedmvs_root")
        scenes = BlendedMVSPairs(d["blendedmvs_root"], size, stride, depth_tolerance=d["depth_tolerance"], photometric=photometric, seed=settings["seed"])
        train = RandomPairs(scenes, d["pairs_per_epoch"], seed=settings["seed"])
    else:
        raise ValueError(f"unknown data.kind {d['kind']!r}; use homography or blendedmvs")
    return train, validation


def load_teacher(settings: dict, device: torch.device) -> CoarseLoFTR | None:
    t = settings["teacher"]
    if not t["checkpoint"]:
        return None
    from .checkpoint import load_model

    teacher = load_model(t["checkpoint"], t["config"]).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def step_schedule(warmup_steps: int, milestones: list[int], gamma: float, steps_per_epoch: int):
    """Learning-rate factor per optimizer step: linear warm-up, then x gamma at each milestone epoch."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        epoch = step // max(1, steps_per_epoch)
        return warm * gamma ** sum(epoch >= m for m in milestones)

    return factor


class Logger:
    """log.jsonl always; TensorBoard when installed (one warning line otherwise)."""

    def __init__(self, output: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        output.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(output / "log.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output / "tensorboard"))
        except ImportError:
            log.warning("tensorboard is not installed; logging to log.jsonl only (pip install tensorboard)")

    def write(self, kind: str, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"kind": kind, "step": step, "time": time.time(), **values}) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.writer is not None:
                self.writer.close()


# --------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(model: CoarseLoFTR, dataset: HomographyPairs, device: torch.device, threshold: float) -> dict[str, float]:
    """Homography AUC@3/5/10 px and match precision of ``model`` on fixed held-out pairs."""
    from .evaluation import auc, homography_corner_error, homography_match_precision
    from .export import ExportableMatcher, ExtractionConfig

    was_training = model.training
    model.eval()
    matcher = ExportableMatcher(model, ExtractionConfig(top_k=model.config.input_width * model.config.input_height // model.config.coarse_stride**2, threshold=threshold))
    errors, precisions, counts = [], [], []
    size = dataset.size
    for index in range(len(dataset)):
        sample = dataset[index]
        outputs = matcher(sample["image0"][None].to(device), sample["image1"][None].to(device))
        valid = outputs[3][0].cpu().numpy()
        kp0 = outputs[0][0].cpu().numpy()[valid]
        kp1 = outputs[1][0].cpu().numpy()[valid]
        homography = sample["homography"].numpy()
        errors.append(homography_corner_error(kp0, kp1, homography, size))
        precisions.append(homography_match_precision(kp0, kp1, homography, 3.0))
        counts.append(len(kp0))
    model.train(was_training)
    aucs = auc(np.array(errors), (3, 5, 10))
    return {
        "auc@3px": aucs[0],
        "auc@5px": aucs[1],
        "auc@10px": aucs[2],
        "precision@3px": float(np.mean(finite)) if (finite := [p for p in precisions if np.isfinite(p)]) else 0.0,
        "matches": float(np.mean(counts)),
    }


# --------------------------------------------------------------------------- training


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the torchrun environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _device(setting: str, local_rank: int) -> torch.device:
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(setting)


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train(settings: dict, resume: str | Path | bool | None = None) -> CoarseLoFTR:
    """Run (or continue) a training run; returns the trained model (unwrapped).

    ``resume``: True continues from ``<output>/checkpoints/last.pt``; a path continues
    from that checkpoint.
    """
    rank, world, local_rank = _distributed()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and settings["train"]["device"] != "cpu" else "gloo")
    tr, opt_s = settings["train"], settings["optim"]
    if tr["threads"]:
        torch.set_num_threads(int(tr["threads"]))
    device = _device(tr["device"], local_rank)
    use_amp = bool(tr["amp"]) and device.type == "cuda"
    torch.manual_seed(settings["seed"] + rank)
    output = Path(settings["output"])
    is_main = rank == 0

    config = model_config(settings)
    model = CoarseLoFTR(config)
    if settings["model"]["init"]:
        from .checkpoint import load_model

        init_path = Path(settings["model"]["init"])
        state = load_model(init_path).state_dict()
        # Blocks and trailing transformer layers the new config removes are dropped on purpose.
        dropped = {key: part for key in state if (part := _removed_part(key, config))}
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in dropped}, strict=False)
        if unexpected:
            raise ValueError(f"init checkpoint {init_path} has weights the model lacks: {unexpected[:4]}")
        if is_main and dropped:
            parts = sorted(set(dropped.values()))
            log.info("init from %s; dropped %d tensors of the blocks and layers the config removes: %s", init_path, len(dropped), ", ".join(parts))
        if is_main and missing:
            log.info("init from %s; %d tensors start fresh (e.g. %s)", init_path, len(missing), missing[0])
        grown = start_added_layers_as_identity(model, missing)
        if is_main and grown:
            log.info("init from %s; transformer layers %s are new and start as the identity", init_path, grown)
    model.to(device)
    if world > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    forward = TrainingForward(model)
    if world > 1:
        # The FPN's top-down layers exist in the checkpoints but the coarse model never uses them.
        forward = nn.parallel.DistributedDataParallel(
            forward, device_ids=[local_rank] if device.type == "cuda" else None, find_unused_parameters=True
        )
    teacher = load_teacher(settings, device)
    weights = LossWeights(**settings["loss"])
    if weights.distillation > 0 and teacher is None:
        raise ValueError("loss.distillation > 0 needs teacher.checkpoint")

    train_set, validation_set = build_datasets(settings, config.coarse_stride)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
    loader = DataLoader(
        train_set, batch_size=opt_s["batch_size"], sampler=sampler, shuffle=False, num_workers=tr["workers"], collate_fn=collate, drop_last=True,
        persistent_workers=False,
    )
    accumulate = int(opt_s["accumulate"])
    steps_per_epoch = max(1, len(loader) // accumulate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt_s["lr"], weight_decay=opt_s["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, step_schedule(opt_s["warmup_steps"], opt_s["milestones"], opt_s["gamma"], steps_per_epoch))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, step, best = 0, 0, -1.0

    if resume:
        path = output / "checkpoints" / "last.pt" if resume is True else Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: {path} does not exist")
        from .checkpoint import read_checkpoint

        state = read_checkpoint(path, map_location=device)  # weights only: a resumed file cannot run code
        model.load_state_dict(state["model_state_dict"])
        optimizer.load_state_dict(state["optimizer_state_dict"])
        scheduler.load_state_dict(state["scheduler_state_dict"])
        scaler.load_state_dict(state["scaler_state_dict"])
        start_epoch, step, best = state["epoch"] + 1, state["step"], state.get("best_auc5", -1.0)
        if is_main:
            log.info("resumed from %s at epoch %d, step %d", path, start_epoch, step)

    logger = Logger(output, is_main)
    if is_main:
        output.mkdir(parents=True, exist_ok=True)
        (output / "settings.json").write_text(json.dumps(settings, indent=2))

    grid = (config.input_width // config.coarse_stride, config.input_height // config.coarse_stride)
    max_steps = int(tr["max_steps"] or 0)
    for epoch in range(start_epoch, tr["epochs"]):
        if max_steps and step >= max_steps:
            break
        train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        forward.train()
        if settings["model"]["freeze_batchnorm"]:
            freeze_batchnorm(model)
        progress = None
        if is_main and tr["progress"]:
            from tqdm import tqdm

            progress = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}", dynamic_ncols=True, leave=False, disable=None)
        sums: dict[str, float] = {}
        count = 0
        optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(loader):
            if index >= steps_per_epoch * accumulate or (max_steps and step >= max_steps):
                break
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            last_micro = (index + 1) % accumulate == 0
            sync = last_micro or world == 1
            context = forward.no_sync() if (world > 1 and not sync) else contextlib.nullcontext()
            with context:
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    similarity, offsets = forward(batch["image0"], batch["image1"], batch["cells1"])
                terms = {}
                if weights.coarse > 0:
                    terms["coarse"] = coarse_loss(similarity, batch["cells1"], weights.focal_alpha, weights.focal_gamma, weights.negative_weight)
                teacher_confidence = None
                if teacher is not None:
                    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                        teacher_similarity, teacher_confidence = _teacher_scores(teacher, batch, config, grid)
                    if weights.distillation > 0:
                        terms["distillation"] = distillation_loss(similarity, teacher_similarity, weights.temperature)
                if offsets is not None and weights.refinement > 0:
                    refine = batch["refine"] if "refine" in batch else batch["cells1"] >= 0
                    terms["refinement"] = refinement_loss(offsets, batch["offsets1"], refine & (batch["cells1"] >= 0), config.fine_stride)
                loss = sum(getattr(weights, name) * value for name, value in terms.items())
                scaler.scale(loss / accumulate).backward()
            with torch.no_grad():
                confidence = torch.exp(log_dual_softmax(similarity))
                metrics = match_metrics(confidence, batch["cells1"], settings["validation"]["threshold"], teacher_confidence)
            for key, value in {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}, **metrics}.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            if not last_micro:
                continue
            if opt_s["grad_clip"]:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), opt_s["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{sums['loss'] / count:.4f}", prec=f"{sums['precision'] / count:.2f}")
            if step % tr["log_every"] == 0:
                logger.write("train", step, {**{k: v / count for k, v in sums.items()}, "lr": scheduler.get_last_lr()[0], "epoch": epoch})
                sums, count = {}, 0
        if progress is not None:
            progress.close()

        summary = {}
        if is_main and validation_set is not None and (epoch + 1) % settings["validation"]["every"] == 0:
            summary = validate(model, validation_set, device, settings["validation"]["threshold"])
            logger.write("validation", step, {**summary, "epoch": epoch})
            log.info("epoch %d step %d validation %s", epoch, step, json.dumps({k: round(v, 4) for k, v in summary.items()}))
        if is_main:
            improved = summary.get("auc@5px", -1.0) > best
            best = max(best, summary.get("auc@5px", -1.0))
            state = {
                "model_state_dict": model.state_dict(),
                "config": config.to_dict(),
                "optimizer_state_dict": optimizer.state_dict(),
                "scaler_state_dict": scaler.state_dict(),
                "scheduler_state_dict": scheduler.state_dict(),
                "epoch": epoch,
                "step": step,
                "best_auc5": best,
                "validation": summary,
                "settings": settings,
            }
            save_checkpoint(output / "checkpoints" / "last.pt", state)
            if improved:
                save_checkpoint(output / "checkpoints" / "best.pt", state)
        if world > 1:
            dist.barrier()
    logger.close()
    return model


def _teacher_scores(teacher: CoarseLoFTR, batch: dict, config: ModelConfig, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher similarity and confidence on the student's coarse grid."""
    factor = config.coarse_stride // teacher.config.coarse_stride
    if factor < 1 or config.coarse_stride % teacher.config.coarse_stride:
        raise ValueError(f"teacher stride {teacher.config.coarse_stride} must divide the student stride {config.coarse_stride}")
    n = batch["image0"].shape[0]
    cnn = teacher.extract_features(torch.cat([batch["image0"], batch["image1"]]))
    similarity, _ = teacher.match_features(cnn[:n], cnn[n:])
    teacher_grid = (grid[0] * factor, grid[1] * factor)
    similarity = pool_similarity(similarity.float(), teacher_grid, teacher_grid, factor)
    return similarity, torch.exp(log_dual_softmax(similarity))
