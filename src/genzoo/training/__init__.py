"""Training: ``trainer`` (Adam, warmup + cosine, checkpoints and resume, DDP; a model is anything
with ``loss(x, y)``), ``precision`` (fp32 / bf16 autocast and its detection), ``distributed``
(the torchrun process group) and ``tensorboard_log`` (the ``--tensorboard`` hook)."""
