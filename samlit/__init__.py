"""samlit: fine-tune Segment Anything's mask decoder with Lightning + Hydra.

Layers, each importing only the ones before it: ``core`` (errors, atomic files, images, seeds) <- ``data``
(readers, prompts, SAM's frame, the datamodule; no model code) <- ``model`` (SAM, weights, embedding cache,
losses, metrics, the LightningModule) <- ``run`` (train, evaluate, embed, predict, export, report) <-
``launch`` (Hydra glue: entry points, resolvers, sweeps, DDP workers). ``docs/design.md`` explains why.
"""

__version__ = "0.1.0"
