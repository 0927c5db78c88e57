"""Prepare the store: ``python prepare.py [the overrides you give train.py]`` (see conf/prepare.yaml)."""

import hydra
from omegaconf import DictConfig

from samlit.launch.entry import entry


@hydra.main(version_base="1.3", config_path="conf", config_name="prepare")
@entry
def main(cfg: DictConfig) -> None:
    from samlit.run.prepare import main as prepare

    prepare(cfg)


if __name__ == "__main__":
    main()
