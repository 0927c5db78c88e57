"""Every option of every config group composes and instantiates what it names."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from samlit.run.setup import build_datamodule
from tests.conftest import CONF

GROUPS = [
    "model",
    "data",
    "cache",
    "loss",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "debug",
    "experiment",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(compose_cfg, group, option):
    extra = ["data.root=/somewhere"] if (group, option) == ("data", "staver") else []
    cfg = compose_cfg(f"{group}={option}", *extra)
    values = {k: cfg[k] for k in cfg if k != "hydra"}
    resolved = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in values.items()}
    assert HydraConfig.get().runtime.choices[group] == option
    if group not in ("debug", "experiment", "scheduler"):  # those write into other groups' keys
        assert resolved[group]
    assert cfg.seed == 0


def test_readme_real_data_command_composes(compose_cfg):
    cfg = compose_cfg("model=vit_b", "loss=dice", "data=staver", "data.root=/data/staver")
    assert cfg.model.model_type == "vit_b"
    assert cfg.module.loss.mask._target_ == "samlit.model.losses.DiceLoss"
    assert cfg.data._target_ == "samlit.data.datamodule.InstanceDataModule"
    assert cfg.data.source._target_ == "samlit.data.staver.StaverSource" and cfg.data.source.root == "/data/staver"


def test_defaults_are_the_offline_path(compose_cfg):
    cfg = compose_cfg()
    assert (cfg.model.model_type, cfg.model.weights) == ("tiny", "random")
    assert cfg.data.source._target_ == "samlit.data.synthetic.SyntheticSource"
    assert cfg.optimizer.lr == pytest.approx(1e-4)


@pytest.mark.parametrize("loss", options("loss"))
def test_every_loss_gives_a_finite_scalar_with_a_gradient(compose_cfg, loss):
    cfg = compose_cfg(f"loss={loss}")
    logits = torch.randn(2, 8, 8, requires_grad=True)
    terms = instantiate(cfg.loss)(logits, (torch.rand(2, 8, 8) > 0.7).float(), torch.rand(2))
    assert set(terms) == {"loss", "loss_mask", "loss_iou"}  # the module logs each as train/<name>
    value = terms["loss"]
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and logits.grad.abs().sum() > 0
    assert instantiate(compose_cfg(f"loss={loss}", "loss.iou_head_weight=0").loss).iou_head_weight == 0


@pytest.mark.parametrize("name", options("optimizer"))
def test_every_optimizer_takes_the_decoder_parameters(compose_cfg, name):
    cfg = compose_cfg(f"optimizer={name}", "optimizer.lr=3e-4")
    optimizer = instantiate(cfg.optimizer)(params=[torch.nn.Parameter(torch.zeros(2))])
    assert type(optimizer).__name__.lower() == name and optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)


@pytest.mark.parametrize("name", options("scheduler"))
def test_every_scheduler_runs_in_a_fit(compose_cfg, name):
    """``scheduler=<name>``: the module's optimizer config, stepped per epoch on val/iou, changes the lr as named."""
    module = instantiate(compose_cfg(f"scheduler={name}", "trainer.max_epochs=5").module)
    config = module.configure_optimizers()
    if name == "none":
        assert isinstance(config, torch.optim.Optimizer)
        return
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step(0.5) if name == "plateau" else scheduler.step()  # a flat val/iou for plateau
    if name == "cosine":  # warm-up from half the lr, then down
        assert rates[0] == pytest.approx(0.5e-4) and rates[1] == pytest.approx(1e-4) and rates[4] < rates[2] < rates[1]
    else:
        assert rates[-1] == pytest.approx(0.5e-4) and rates[0] == pytest.approx(1e-4)


@pytest.mark.parametrize("mode", options("cache"))
def test_cache_options_instantiate_into_the_datamodule(compose_cfg, tmp_path, mode):
    cfg = compose_cfg(f"cache={mode}")
    store = instantiate(cfg.cache)
    assert store.mode == mode
    datamodule = build_datamodule(cfg.data)
    if mode == "none":  # no store: items are made from their files at every fetch
        assert datamodule.store is None
        return
    assert datamodule.store.mode == mode and datamodule.store.dtype == cfg.cache.dtype
    if mode == "disk":  # under paths.cache_dir, outside the run dir
        assert datamodule.store.root == tmp_path / "cache" / "store"


def test_cache_dir_defaults_to_the_user_cache(monkeypatch):
    """Outside the run dir so runs and sweep jobs share it; $SAMLIT_CACHE moves it."""

    def cache_root() -> str:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", overrides=["paths.root_dir=/r"]).cache.root

    monkeypatch.delenv("SAMLIT_CACHE", raising=False)
    assert cache_root() == "~/.cache/samlit/store"
    monkeypatch.setenv("SAMLIT_CACHE", "/big/disk/samlit")
    assert cache_root() == "/big/disk/samlit/store"
    GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    "option, shortcuts, source",
    [
        ("synthetic", ["data.num_scans=3", "data.image_size=64"], {"num_scans": 3, "image_size": 64}),
        ("staver", ["data.root=/data/staver", "data.min_region_area=9"], {"root": "/data/staver", "min_area": 9}),
        ("folder", ["data.root=/data/my", "data.instances=components"], {"root": "/data/my"}),
        ("coco", ["data.images=/data/im", "data.annotations=/data/a.json"], {"images": "/data/im"}),
    ],
)
def test_every_data_option_builds_its_datamodule_from_the_shortcuts(compose_cfg, option, shortcuts, source):
    """``data.root=...`` and the other top-level keys a source reads reach the source node; the datamodule gets
    the rest (``samlit.run.setup.build_datamodule``)."""
    datamodule = build_datamodule(compose_cfg(f"data={option}", *shortcuts, "seed=7", "data.crop=none").data)
    assert type(datamodule).__name__ == "InstanceDataModule" and (datamodule.seed, datamodule.crop) == (7, "none")
    for key, value in source.items():
        got = getattr(datamodule.source, key)
        assert (Path(value) if isinstance(got, Path) else value) == got, key
    if option == "folder":
        assert datamodule.source.instances == "components"


def test_seed_zero_reaches_the_data_split(compose_cfg):
    assert compose_cfg().data.seed == 0
    assert compose_cfg("seed=7").data.seed == 7


def test_logger_can_be_turned_off(compose_cfg):
    from samlit.run.setup import instantiate_group

    assert instantiate_group(compose_cfg("~logger").get("logger")) == []
    (csv_logger,) = instantiate_group(compose_cfg().logger)
    assert type(csv_logger).__name__ == "CSVLogger"


@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm"])
def test_slurm_launcher_composes(compose_cfg, launcher):
    """``hydra/launcher=slurm`` (samlit's keys over hydra-submitit-launcher's) composes; no SLURM needed."""
    cfg = compose_cfg(f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu", "trainer=ddp")
    launcher_cfg = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher_cfg["_target_"].endswith("SlurmLauncher") and launcher_cfg["partition"] == "gpu"
    if launcher == "slurm":
        assert launcher_cfg["tasks_per_node"] == launcher_cfg["gpus_per_node"] == 1
        assert launcher_cfg["timeout_min"] == 240


def test_optuna_search_space(compose_cfg):
    cfg = compose_cfg("hparams_search=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"optimizer.lr", "optimizer.weight_decay", "loss", "data.prompts.box_jitter"}
    for choice in sweeper.params.loss.removeprefix("choice(").removesuffix(")").split(","):
        assert (CONF / "loss" / f"{choice.strip()}.yaml").is_file()  # every option names a real loss config


@pytest.mark.parametrize("trainer", ["ddp", "ddp_cpu"])
def test_ddp_trainers_use_the_hydra_aware_strategy(compose_cfg, trainer):
    from samlit.launch.ddp import HydraDDPStrategy

    cfg = compose_cfg(f"trainer={trainer}")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, HydraDDPStrategy)
    assert strategy.process_group_backend == ("gloo" if trainer == "ddp_cpu" else "nccl")


def test_ddp_workers_rerun_this_job_in_its_dir(compose_cfg, monkeypatch):
    """A worker gets this job's overrides (not sys.argv: a multirun's ``-m`` and comma lists) and its dir."""
    from samlit.launch.ddp import worker_command

    cfg = compose_cfg("loss=focal", "optimizer.lr=0.001")
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "/runs/multi run/3"
        cfg.hydra.runtime.cwd = "/home/me"
    HydraConfig().set_config(cfg)
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "loss=dice,focal", "optimizer.lr=1e-4,1e-3"])
    command, cwd = worker_command(local_rank=1)
    assert command[:2] == [sys.executable, "/home/me/train.py"] and cwd == "/home/me"
    assert "-m" not in command and "loss=focal" in command and "optimizer.lr=0.001" in command
    assert "hydra.run.dir='/runs/multi run/3'" in command and "hydra.output_subdir=null" in command


@pytest.mark.parametrize(
    "env,offline",
    [
        ({}, True),
        ({"WANDB_API_KEY": "k"}, False),
        ({"WANDB_MODE": "offline"}, False),
        ({"WANDB_MODE": "online"}, False),
    ],
)
def test_wandb_is_offline_without_an_account(monkeypatch, tmp_path, env, offline):
    """No key, no ``wandb login``, no WANDB_MODE: offline. WANDB_MODE set: W&B follows it (offline=False)."""
    from samlit.launch.resolvers import wandb_offline

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert wandb_offline() is offline


def test_wandb_logger_names_the_run_and_groups_sweeps(compose_cfg):
    cfg = compose_cfg("logger=[csv,wandb,tensorboard]", "loss=focal")
    wandb = OmegaConf.to_container(cfg.logger.wandb, resolve=True)
    assert wandb["project"] == "samlit" and wandb["group"] is None  # a single run: no group
    assert wandb["name"] == "loss=focal" and wandb["save_dir"] == cfg.paths.output_dir
    assert sorted(cfg.logger) == ["csv", "tensorboard", "wandb"]
