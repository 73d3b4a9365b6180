"""Normalizing flows: invertible transforms (``transforms``: each ``forward``/``inverse`` returns
``(outputs, logabsdet)``), the image flow and its dequantization bound, NICE, RealNVP, Glow, and the
2-D toy flows. Importing the package registers its models."""

from . import coupling, glow  # noqa: F401,I001
