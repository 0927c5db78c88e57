"""``python -m samlit.data info|export <train.py overrides>``: look at a data set before training on it.

``info`` prints what train.py would use: images read and left out (with why), instances per category (the ones
used, what was left out beside them), empty ones and specks, boxes per image, and the split. ``export --out DIR``
writes the data set's images and instances as COCO (``DIR/instances.json``) and as an image/label folder
(``DIR/masks``; ``--coco-only``: COCO alone), all or nothing: see ``samlit.data.convert``. Options and overrides
come in any order (``export --out DIR data=coco ...`` or ``export data=coco ... --out DIR``).
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
from samlit.data.convert import COCO_ONLY, check_out, export_instances
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
        lines.append(f"instances per category: {summary['instances_per_category']}{left_out(summary)}")
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


def left_out(summary: dict) -> str:
    """``"; left out: object 2 empty, 4 below data.min_region_area; not instances: 1 crowd"``: what the per-category
    counts of the census leave out, beside them (``""`` when nothing was)."""
    words = {"without_ink": "empty", "below_min_area": "below data.min_region_area"}
    dropped = [
        f"{name} " + ", ".join(f"{n} {words[kind]}" for kind, n in kinds.items())
        for name, kinds in summary.get("instances_left_out_per_category", {}).items()
    ]
    never = [
        f"{summary[key]} {what}"
        for key, what in (("crowd_annotations", "crowd"), ("annotations_other_category", "of other categories"))
        if summary.get(key)
    ]
    return (f"; left out: {'; '.join(dropped)}" if dropped else "") + (
        f"; not instances: {', '.join(never)}" if never else ""
    )


def parser() -> argparse.ArgumentParser:
    """The command line; options and overrides in any order (``parse_intermixed_args``)."""
    parser = argparse.ArgumentParser(prog="python -m samlit.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("info", "export"))
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. data=coco data.images=... ")
    parser.add_argument("--out", type=Path, help="export: the folder to write (must not hold an export yet)")
    parser.add_argument(
        COCO_ONLY, action="store_true", help="export: instances.json and images/ alone, no label folder (overlaps)"
    )
    return parser


def cli(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)
    try:
        if args.command == "export" and args.out is None:
            raise SamlitError("export needs --out <folder>")
        if args.command == "export":
            check_out(args.out)  # before the data is looked at: nothing is ever overwritten
        cfg = compose_train(args.overrides)
        datamodule = build_datamodule(cfg.data)
        datamodule.prepare_data()
        if args.command == "info":
            datamodule.setup("fit")
            print("\n".join(info_lines(datamodule)))
        else:  # no split needed: export_instances checks the records itself (once)
            counts = export_instances(
                datamodule.source,
                out=args.out,
                on_bad_file=datamodule.on_bad_file,
                labels=not args.coco_only,
                max_pixels=datamodule.max_image_pixels,
            )
            wrote = "instances.json, images/" + ("" if args.coco_only else ", masks/")
            print(f"{counts['images']} images, {counts['instances']} instances -> {args.out}: {wrote}")
    except (SamlitError, HydraException) as error:
        user = find_user_error(error) or error  # instantiate wraps a SamlitError raised by the datamodule
        print(f"error: {str(user).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0
