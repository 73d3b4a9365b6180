"""The exact autoregressive family: a shared base (``ar_base``: the exact likelihood over the k levels,
cached and naive sampling, completion), the masked and shifted layers, and one module per model.
Importing the package registers its models in the registry's order (docs/CONTRACT.md)."""

from . import pixelcnn, pixelrnn, transformer, nade, made, pixelcnn_pp, pixelsnail  # noqa: F401,I001
