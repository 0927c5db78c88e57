"""The frame ceiling of any data: the best IoU any decoder could reach through the whole page (``data.crop=none``)
and through box crops (``data.crop=box``) at several margins. No model runs: the oracle's logits are the true
masks pooled into the decoder's 256 x 256 frame, upsampled as SAM does, at the best threshold
(``samlit.run.ceiling``).

    python bench/frame_ceiling.py [--split test|all] [--margins 0.05,0.1,0.15,0.25] [train.py data overrides ...]
    python bench/frame_ceiling.py data.image_size=2339 data.num_scans=12      # synthetic A4 pages at 200 dpi
    python bench/frame_ceiling.py data=staver data.root=/data/staver --split all

Prints one line per frame: ``page`` and ``crop m=<margin>``, with the oracle IoU, its threshold and the masks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from samlit.launch import resolvers  # noqa: F401  (the configs' resolvers)
from samlit.run.ceiling import frame_ceiling
from samlit.run.setup import build_datamodule

CONF = Path(__file__).resolve().parents[1] / "conf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    parser.add_argument("--margins", default="0.05,0.1,0.15,0.25")
    parser.add_argument("overrides", nargs="*", help="config overrides, as train.py takes them")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={Path.cwd()}", *args.overrides], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path.cwd())
    datamodule = build_datamodule(cfg.data)
    datamodule.store = None  # every item made from its files: the oracle needs no embedding
    datamodule.prepare_data()
    datamodule.setup("fit")
    splits = ["train", "val", "test"] if args.split == "all" else [args.split]
    files = [f for s in splits for f in datamodule.splits[s]]
    stamps = [datamodule.instances[f.key] for f in files]
    print(f"data: {datamodule.root} ({len(files)} scans of split {args.split}, {sum(stamps)} stamps)")
    frames = [("page", "none", 0.0)] + [(f"crop m={m}", "box", float(m)) for m in args.margins.split(",")]
    for name, crop, margin in frames:
        start = time.perf_counter()
        datamodule.crop_margin, datamodule.splits = margin, {"all": files}
        ceiling = frame_ceiling(datamodule.dataset("all", train=False, crop=crop))
        print(
            f"{name:>12}: oracle IoU {ceiling['iou']:.4f} at threshold {ceiling['threshold']:.2f} over "
            f"{ceiling['n_masks']} masks ({time.perf_counter() - start:.1f} s)"
        )
    rerun = f"--split {args.split} --margins {args.margins} {' '.join(args.overrides)}"
    print(f"command: python bench/frame_ceiling.py {rerun}".rstrip())


if __name__ == "__main__":
    sys.exit(main())
