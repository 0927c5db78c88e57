"""samlit: fine-tune Segment Anything's mask decoder with Lightning + Hydra.

The module map (what each module holds, and the layers each one may import) lives in one place:
``docs/design.md``, section 1 "Layers and layout". The commands are in README.md; ``samlit --help`` lists the
non-Hydra ones (``samlit.cli``).
"""

__version__ = "0.1.0"
