"""Masks for box / click / mask prompts on new images, what SamPredictor gives: ``python predict.py model=...
image=... box=[...] [points=[[x,y],...] labels=[1,...]] [mask_input=<logits .npy>]`` (see conf/predict.yaml and
samlit/run/prompt_input.py)."""

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
