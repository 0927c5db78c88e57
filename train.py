"""Fine-tune SAM's mask decoder: ``python train.py [overrides]`` (see README and conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from samlit.launch.entry import entry


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@entry(quiet_ranks=True)
def main(cfg: DictConfig) -> float:
    from samlit.run.train import main as train

    return train(cfg)


if __name__ == "__main__":
    main()
