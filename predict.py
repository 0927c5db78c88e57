"""Masks for box prompts on new images: ``python predict.py model=... image=... box=[...]`` (see conf/predict.yaml)."""

import hydra
from omegaconf import DictConfig

from samlit.launch.entry import entry


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
@entry
def main(cfg: DictConfig) -> None:
    from samlit.run.predict import main as predict

    predict(cfg)


if __name__ == "__main__":
    main()
