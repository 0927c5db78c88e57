"""Fine-tune SAM's mask decoder: ``python train.py [overrides]`` (see README and conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from samlit.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    from samlit.train import main as train

    return train(cfg)


if __name__ == "__main__":
    main()
