"""The training loop on the CPU: it learns, resumes exactly, distils, and stays in sync under DDP."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import cv2
import pytest
import skimage.data
import torch

from coarse_loftr_train import CoarseLoFTR, ModelConfig
from coarse_loftr_train.datasets import collate
from coarse_loftr_train.losses import coarse_loss
from coarse_loftr_train.trainer import (
    TrainingForward,
    build_datasets,
    load_settings,
    merge,
    model_config,
    parse_override,
    pool_similarity,
    train,
)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for index, name in enumerate(("astronaut", "coffee", "chelsea", "rocket", "camera")):
        image = getattr(skimage.data, name)()
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        cv2.imwrite(str(folder / f"{index:04d}.png"), image)
    return folder


def tiny_settings(image_folder, output, *extra: str) -> dict:
    return load_settings(
        None,
        [
            f"output={output}",
            f"data.images={image_folder}",
            "data.holdout=1",
            "data.pairs_per_epoch=32",
            "model.input_width=128",
            "model.input_height=96",
            "optim.batch_size=4",
            "optim.accumulate=2",
            "optim.lr=0.005",
            "optim.warmup_steps=2",
            "optim.milestones=[3]",
            "train.epochs=4",
            "train.threads=1",
            "train.progress=false",
            "train.log_every=1",
            "validation.pairs=4",
            *extra,
        ],
    )


def fixed_batch_loss(model: CoarseLoFTR, settings: dict) -> float:
    train_set, _ = build_datasets(settings, model.config.coarse_stride)
    train_set.set_epoch(0)
    batch = collate([train_set[i] for i in range(8)])
    with torch.no_grad():
        similarity, _ = TrainingForward(model).train()(batch["image0"], batch["image1"], batch["cells1"])
        return float(coarse_loss(similarity, batch["cells1"]))


def test_settings_merge_overrides_and_reject_unknown_keys():
    settings = load_settings(None, ["optim.lr=1e-4", "model.refine_window=0", "optim.milestones=[1, 2]"])
    assert settings["optim"]["lr"] == 1e-4 and settings["optim"]["milestones"] == [1, 2]
    assert model_config(settings).refine_window == 0
    assert parse_override("a.b.c=x") == {"a": {"b": {"c": "x"}}}
    with pytest.raises(KeyError, match="unknown setting 'optim.lr_typo'"):
        load_settings(None, ["optim.lr_typo=1"])
    with pytest.raises(KeyError):
        merge({"a": 1}, {"b": 2})


def test_a_tiny_cpu_run_reduces_the_loss_and_writes_checkpoints(image_folder, tmp_path):
    settings = tiny_settings(image_folder, tmp_path / "run")
    torch.manual_seed(settings["seed"])
    initial = CoarseLoFTR(model_config(settings))
    before = fixed_batch_loss(initial, settings)
    model = train(settings)
    after = fixed_batch_loss(model, settings)
    assert after < 0.8 * before
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 3 and checkpoint["step"] == 4 * 4
    assert {"model_state_dict", "config", "optimizer_state_dict", "scaler_state_dict", "scheduler_state_dict"} <= set(checkpoint)
    assert checkpoint["config"]["refine_window"] == 5 and checkpoint["config"]["input_width"] == 128
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert kinds == {"train", "validation"}
    first = next(r for r in records if r["kind"] == "train")
    assert {"loss", "coarse", "refinement", "precision", "confidence_gt_mae", "lr"} <= set(first)
    assert "auc@5px" in next(r for r in records if r["kind"] == "validation")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return  # without tensorboard the run logs to log.jsonl only
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_the_lead_checkpoint_loader_reads_our_checkpoints(image_folder, tmp_path):
    from coarse_loftr_train.checkpoint import load_model

    settings = tiny_settings(image_folder, tmp_path / "run", "train.epochs=1")
    model = train(settings)
    loaded = load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert loaded.config == model.config and loaded.refinement is not None
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_init_into_a_smaller_student_drops_the_removed_blocks_and_layers_and_keeps_the_rest(image_folder, tmp_path):
    """``model.stage_blocks: [0, 2, 2, 2]`` and ``model.layer_names: [self, cross]`` started
    from a full student checkpoint: the first stage's blocks and the last two transformer
    layers are dropped, every other weight starts from the checkpoint."""
    from coarse_loftr_train.checkpoint import load_model

    full = train(tiny_settings(image_folder, tmp_path / "full", "train.epochs=1"))
    settings = tiny_settings(
        image_folder, tmp_path / "fast", "train.epochs=1", "optim.lr=0", "optim.warmup_steps=0",
        "model.stage_blocks=[0, 2, 2, 2]", "model.layer_names=[self, cross]",
        f"model.init={tmp_path / 'full' / 'checkpoints' / 'last.pt'}",
    )
    fast = train(settings)
    assert fast.config.stage_blocks == (0, 2, 2, 2) and len(fast.backbone.layer1) == 0
    assert len(fast.loftr_coarse.layers) == 2
    fast_state = fast.state_dict()
    removed = ("backbone.layer1.", "loftr_coarse.layers.2.", "loftr_coarse.layers.3.")
    for key, value in full.state_dict().items():
        if key.startswith(removed):
            assert key not in fast_state
        elif not key.endswith(("running_mean", "running_var", "num_batches_tracked")):  # BN statistics move
            torch.testing.assert_close(fast_state[key], value)
    loaded = load_model(tmp_path / "fast" / "checkpoints" / "last.pt")
    assert loaded.config.stage_blocks == (0, 2, 2, 2) and loaded.config.layer_names == ("self", "cross")


def test_a_grown_student_starts_as_the_model_it_grew_from_and_its_new_layers_learn(image_folder, tmp_path):
    """``model.layer_names`` with a second self/cross pair, started from a one-pair checkpoint:
    before any step the grown model gives the same confidences as its init (the new layers
    start as the identity), and one epoch of training moves the new layers' weights."""
    from coarse_loftr_train.checkpoint import load_model

    small = train(tiny_settings(image_folder, tmp_path / "small", "train.epochs=1", "model.layer_names=[self, cross]"))
    init = f"model.init={tmp_path / 'small' / 'checkpoints' / 'last.pt'}"
    pair = ("model.layer_names=[self, cross, self, cross]",)
    start = train(tiny_settings(image_folder, tmp_path / "start", "train.epochs=1", "optim.lr=0", "optim.warmup_steps=0", init, *pair))
    grown = train(tiny_settings(image_folder, tmp_path / "grown", "train.epochs=1", init, *pair))
    images = torch.rand(2, 1, 1, 128, 160, generator=torch.Generator().manual_seed(3))
    small, start = load_model(tmp_path / "small" / "checkpoints" / "last.pt").eval(), start.eval()
    with torch.no_grad():  # lr 0 kept the weights as initialised; BatchNorm's running statistics moved, so copy them
        start.load_state_dict({**start.state_dict(), **{k: v for k, v in small.state_dict().items() if "running" in k}})
        torch.testing.assert_close(start(*images), small(*images), atol=1e-6, rtol=1e-5)
    assert len(grown.loftr_coarse.layers) == 4
    assert grown.loftr_coarse.layers[2].norm2.weight.abs().max() > 0  # it left the identity
    assert not torch.equal(grown.loftr_coarse.layers[3].mlp[0].weight, start.loftr_coarse.layers[3].mlp[0].weight)


def test_freeze_batchnorm_keeps_the_init_statistics_and_still_trains_the_rest(image_folder, tmp_path):
    """``model.freeze_batchnorm``: a fine-tune keeps every BatchNorm's running statistics from
    its init checkpoint (they move without it) while the weights, BatchNorm scales included, learn."""
    from coarse_loftr_train.checkpoint import load_model

    train(tiny_settings(image_folder, tmp_path / "init", "train.epochs=1"))
    init = f"model.init={tmp_path / 'init' / 'checkpoints' / 'last.pt'}"
    start = load_model(tmp_path / "init" / "checkpoints" / "last.pt").state_dict()
    frozen = train(tiny_settings(image_folder, tmp_path / "frozen", "train.epochs=1", init, "model.freeze_batchnorm=true")).state_dict()
    free = train(tiny_settings(image_folder, tmp_path / "free", "train.epochs=1", init)).state_dict()
    statistics = [key for key in start if key.endswith(("running_mean", "running_var"))]
    assert statistics
    for key in statistics:
        torch.testing.assert_close(frozen[key], start[key], rtol=0, atol=0)
    assert any(not torch.allclose(free[key], start[key]) for key in statistics)
    scales = [key.replace("running_mean", "weight") for key in statistics if key.endswith("running_mean")]
    assert any(not torch.allclose(frozen[key], start[key]) for key in scales)
    attention = [key for key in start if key.startswith("loftr_coarse.layers.") and key.endswith("weight")]
    assert attention and all(not torch.allclose(frozen[key], start[key]) for key in attention[:3])


def test_resume_continues_exactly_where_the_run_stopped(image_folder, tmp_path):
    straight = train(tiny_settings(image_folder, tmp_path / "straight", "train.epochs=3"))
    train(tiny_settings(image_folder, tmp_path / "resumed", "train.epochs=2"))
    resumed = train(tiny_settings(image_folder, tmp_path / "resumed", "train.epochs=3"), resume=True)
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["step"] == 12
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    with pytest.raises(FileNotFoundError):
        train(tiny_settings(image_folder, tmp_path / "nothing"), resume=True)


def test_pool_similarity_takes_the_best_of_each_block():
    similarity = torch.arange(16 * 16, dtype=torch.float32).reshape(1, 16, 16)  # 4x4 grids
    pooled = pool_similarity(similarity, (4, 4), (4, 4), 2)
    assert pooled.shape == (1, 4, 4)
    # Block (0, 0) of image 0 holds rows 0, 1, 4, 5; block (0, 0) of image 1 columns 0, 1, 4, 5.
    assert float(pooled[0, 0, 0]) == float(similarity[0, 5, 5])
    assert float(pooled[0, 3, 3]) == float(similarity[0, 15, 15])


def test_distillation_from_a_stride_8_teacher_lowers_the_kl(image_folder, tmp_path):
    teacher_config = ModelConfig(
        name="tiny-teacher", coarse_stride=8, fine_stride=2, initial_dim=8, block_dims=(8, 16, 32), d_model=32, d_ffn=32, nhead=1,
        layer_names=("self", "cross"), input_width=128, input_height=96,
    )
    torch.manual_seed(5)
    teacher_path = tmp_path / "teacher.pt"
    torch.save({"model_state_dict": CoarseLoFTR(teacher_config).state_dict(), "config": teacher_config.to_dict()}, teacher_path)
    settings = tiny_settings(
        image_folder, tmp_path / "distil", f"teacher.checkpoint={teacher_path}", "loss.distillation=1.0", "loss.coarse=0", "loss.refinement=0",
        "train.epochs=3",
    )
    train(settings)
    records = [json.loads(line) for line in (tmp_path / "distil" / "log.jsonl").read_text().splitlines() if '"train"' in line]
    assert "confidence_teacher_mae" in records[0] and "coarse" not in records[0]
    assert records[-1]["distillation"] < records[0]["distillation"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, settings: dict, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch.distributed as dist

    model = train(settings)
    torch.save(model.state_dict(), f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_keeps_the_weights_in_sync(image_folder, tmp_path):
    import torch.multiprocessing as mp

    settings = tiny_settings(image_folder, tmp_path / "ddp", "train.epochs=2", "train.device=cpu", "validation.pairs=0")
    mp.spawn(_ddp_worker, args=(2, _free_port(), settings, str(tmp_path)), nprocs=2, join=True)
    state0 = torch.load(tmp_path / "rank0.pt")
    state1 = torch.load(tmp_path / "rank1.pt")
    torch.manual_seed(settings["seed"])
    initial = CoarseLoFTR(model_config(settings)).state_dict()
    changed = 0
    # Parameters must be identical; BatchNorm running statistics are per process on the
    # CPU (DDP re-broadcasts rank 0's before each forward; SyncBatchNorm is used on CUDA).
    parameters = {name for name, _ in CoarseLoFTR(model_config(settings)).named_parameters()}
    assert len(parameters) > 50
    for key in parameters:
        assert torch.equal(state0[key], state1[key]), key
        changed += not torch.equal(state0[key], initial[key])
    assert changed > 10
    checkpoint = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 4  # 32 pairs / 2 processes / (4 x 2) per step = 2 steps per epoch


def test_train_command_runs_and_reports_bad_settings_in_one_line(image_folder, tmp_path, capsys):
    from coarse_loftr_ros.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(f"output: {tmp_path / 'cli'}\ndata:\n  images: {image_folder}\n  holdout: 1\n  pairs_per_epoch: 8\n")
    args = ["train", "--config", str(config), "model.input_width=128", "model.input_height=96", "optim.batch_size=4",
            "optim.accumulate=1", "train.epochs=1", "train.threads=1", "train.progress=false", "validation.pairs=2"]
    assert main(args) == 0
    assert (tmp_path / "cli" / "checkpoints" / "last.pt").is_file()
    assert main(args + ["--resume"]) == 0  # already at the last epoch: nothing left to do
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["train", "optim.lr_typo=1"]) == 2
    assert main(["train", "--resume", str(tmp_path / "none.pt"), f"output={tmp_path / 'x'}", f"data.images={image_folder}", "data.holdout=1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("coarse-loftr train: error:")]
    assert len(errors) == 3 and "unknown setting 'optim.lr_typo'" in errors[1] and "none.pt" in errors[2]


TRAINING_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "config").glob("train_*.yaml"))


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda p: p.name)
def test_training_configs_build_their_model_and_start_from_another_recipe_stage(path):
    settings = load_settings(path)
    model = CoarseLoFTR(model_config(settings))
    assert sum(p.numel() for p in model.parameters()) > 0
    init = settings["model"]["init"]
    shipped = Path(__file__).resolve().parents[1] / (init or "")
    if init and init.startswith("coarse_loftr_ros/models/"):  # the checkpoint shipped with the package
        from coarse_loftr_train.checkpoint import load_model

        init_model = load_model(shipped)
        missing, unexpected = model.load_state_dict(init_model.state_dict(), strict=False)
        grown = range(len(init_model.loftr_coarse.layers), len(model.loftr_coarse.layers))  # a grown student's new layers
        assert not unexpected and all(any(k.startswith(f"loftr_coarse.layers.{i}.") for i in grown) for k in missing), missing
    elif init and init.startswith("training/"):  # a committed checkpoint of an earlier run (training/*/README.md)
        from coarse_loftr_train.checkpoint import load_model

        missing, unexpected = model.load_state_dict(load_model(shipped).state_dict(), strict=False)
        assert not missing and not unexpected
    elif init:  # a later stage starts from a checkpoint that an earlier shipped config writes
        outputs = {load_settings(other)["output"] for other in TRAINING_CONFIGS if other != path}
        assert Path(init).parent.parent.as_posix() in outputs, f"{path.name}: init {init} is no other config's output"
