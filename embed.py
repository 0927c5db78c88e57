"""Prebuild the embedding cache: ``python embed.py [the overrides you give train.py]`` (see conf/embed.yaml)."""

import hydra
from omegaconf import DictConfig

from samlit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="embed")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from samlit.embed import main as embed

    embed(cfg)


if __name__ == "__main__":
    main()
