"""Prebuild the embedding cache: ``python embed.py [the overrides you give train.py]`` (see conf/embed.yaml)."""

import hydra
from omegaconf import DictConfig

from samlit.launch.entry import entry


@hydra.main(version_base="1.3", config_path="conf", config_name="embed")
@entry
def main(cfg: DictConfig) -> None:
    from samlit.run.embed import main as embed

    embed(cfg)


if __name__ == "__main__":
    main()
