"""``python -m samlit.data info|export <train.py overrides>``: look at a data set before training on it.

``info`` prints what train.py would use: images read and left out (with why), instances per category, empty
ones and specks, boxes per image, and the split. ``export --out DIR`` writes the data set's images and instances
as COCO (``DIR/instances.json``) and as an image/label folder (``DIR/masks``): see ``samlit.data.convert``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig

import samlit.launch.resolvers  # noqa: F401  (the configs' ${samlit.*:} resolvers)
from samlit.core.errors import SamlitError, find_user_error
from samlit.data.convert import export_instances
from samlit.data.datamodule import InstanceDataModule
from samlit.run.setup import build_datamodule

CONF = Path(__file__).resolve().parents[2] / "conf"


def compose_train(overrides: list[str]) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, as train.py would see it (data and outputs under the current dir,
    or ``SAMLIT_ROOT``, unless ``paths.root_dir=`` is given)."""
    if not any(o.startswith("paths.root_dir=") for o in overrides):
        overrides = [f"paths.root_dir={os.environ.get('SAMLIT_ROOT', os.getcwd())}", *overrides]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    return cfg


def info_lines(datamodule: InstanceDataModule) -> list[str]:
    summary = datamodule.summary()
    census = datamodule.census.values()
    boxes = sorted(c.instances for c in census if c.instances)
    lines = [
        f"data: {summary['root']} ({summary.get('source', 'staver')})",
        f"images: {len(datamodule.census)} read, {summary['bad_images']} bad inputs left out, "
        f"{summary['images_without_instance']} without an instance, {len(summary['stray_files'])} files not used",
        f"instances: {sum(boxes)} used, {summary['instances_without_ink']} empty, "
        f"{summary['instances_below_min_area']} below data.min_region_area={datamodule.min_region_area} px",
    ]
    if "instances_per_category" in summary:
        lines.append(f"instances per category: {summary['instances_per_category']}")
    if boxes:
        lines.append(f"boxes per image: min {boxes[0]}, median {statistics.median(boxes):g}, max {boxes[-1]}")
    given = "the data set's own" if datamodule.source.user_splits() is not None else f"seeded (seed {datamodule.seed})"
    split = ", ".join(
        f"{n} {summary[f'{n}_images']} images / {summary[f'{n}_instances']} instances" for n in datamodule.splits
    )
    lines.append(f"split ({given}): {split}")
    lines += [f"left out: {problem}" for problem in summary["bad_files"]]
    lines += [f"not used: {stray}" for stray in summary["stray_files"]]
    return lines


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samlit.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("info", "export"))
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. data=coco data.images=... ")
    parser.add_argument("--out", type=Path, help="export: the folder to write (must not hold an export yet)")
    args = parser.parse_args(argv)
    try:
        if args.command == "export" and args.out is None:
            raise SamlitError("export needs --out <folder>")
        if args.command == "export" and (args.out / "instances.json").exists():
            raise SamlitError(
                f"{args.out / 'instances.json'} already exists; it is not overwritten: pass another --out"
            )
        cfg = compose_train(args.overrides)
        datamodule = build_datamodule(cfg.data)
        datamodule.prepare_data()
        if args.command == "info":
            datamodule.setup("fit")
            print("\n".join(info_lines(datamodule)))
        else:  # no split needed: export_instances checks the records itself (once)
            counts = export_instances(datamodule.source, out=args.out, on_bad_file=datamodule.on_bad_file)
            print(f"{counts['images']} images, {counts['instances']} instances -> {args.out}/instances.json, masks/")
    except (SamlitError, HydraException) as error:
        user = find_user_error(error) or error  # instantiate wraps a SamlitError raised by the datamodule
        print(f"error: {str(user).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0
