"""samlit: fine-tune Segment Anything's mask decoder with Lightning + Hydra."""

__version__ = "0.1.0"
