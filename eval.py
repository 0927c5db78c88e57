"""Test-split IoU / Dice of any SAM weights: ``python eval.py model=... data=...`` (see conf/eval.yaml)."""

import hydra
from omegaconf import DictConfig

from samlit.launch.entry import entry


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
@entry
def main(cfg: DictConfig) -> None:
    from samlit.run.evaluate import main as evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
