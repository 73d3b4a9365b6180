"""Scoring a trained model: ``scoring`` (per-image figures in batches, the one loop behind
``genzoo eval``, the trainer's test figure and the report), ``quality`` (sample quality: FID,
KID, precision/recall, memorisation, with the held-out floor) and ``probe`` (linear probes on a
model's codes against pixel baselines)."""
