"""samlit: fine-tune Segment Anything's mask decoder with Lightning + Hydra."""

from samlit import resolvers as _resolvers  # noqa: F401  (the configs' ${samlit.*:} resolvers)

__version__ = "0.1.0"
