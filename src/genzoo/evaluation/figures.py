"""Which figure of a run is shown, and how it is described: pure functions of the records a run folder keeps
(metrics.jsonl's lines, evals.jsonl's results, run.json's data fingerprints); :mod:`genzoo.runs` reads the files."""

from __future__ import annotations


def test_figures(record: dict) -> dict:
    """A metrics record's per-image test figures by name (``test_mse`` -> ``mse``): not its counts or loss."""
    return {k[5:]: v for k, v in record.items() if k.startswith("test_") and k not in ("test_count", "test_total",
                                                                                      "test_loss")}


def data_changed(record: dict, split: str, now: dict) -> str | None:
    """One line saying how a split's data differs from what the run recorded at launch, or None
    (also for runs launched before fingerprints were kept)."""
    was = record.get("data_fingerprint", {}).get(split)
    if not was or was == now:
        return None
    count = (f"{was['count']} -> {now['count']} images" if was["count"] != now["count"]
             else f"{now['count']} images, changed")
    return f"the {split} data changed since this run was launched ({count})"


def tightest_likelihood(evals: list, data: str, split: str = "test") -> dict | None:
    """The lowest nll among the kept evaluations of the whole ``split`` of ``data`` (no subset, fp32):
    for a bound the tightest measured (e.g. the IWAE bound with the largest K tried), for an exact
    figure the exact one. None if there is none. A bound sampled over times (diffusion, ``t_samples``) is
    an estimate with noise: the lowest of several draws would be biased low, so the one with the most
    times per image stands (the latest among equals)."""
    whole = [e for e in evals if e.get("data") == data and e.get("split") == split and "nll_nats" in e
             and "subset_of" not in e and e.get("precision", "fp32") == "fp32"]
    if not whole:
        return None
    sampled = [e for e in whole if "t_samples" in e]
    if sampled:
        return max(enumerate(sampled), key=lambda ie: (ie[1]["t_samples"], ie[0]))[1]
    return min(whole, key=lambda e: e["nll_nats"])


def estimator_note(e: dict) -> str:
    """The estimator of a kept figure where it is not the model's training one, as ", K = ..." words ('' else)."""
    if "iwae_k" in e:
        return f", IWAE K = {e['iwae_k']}"
    return f", {e['t_samples']} time(s) per image" if "t_samples" in e else ""


def eval_label(e: dict) -> str:
    """Where a kept `genzoo eval` figure comes from, in words."""
    what = (f"IWAE bound, K = {e['iwae_k']}" if "iwae_k" in e else
            f"the bound sampled at {e['t_samples']} time(s) per image" if "t_samples" in e else "genzoo eval")
    return f"{what}, full test set ({e['count']} images{', ' + e['date'][:10] if 'date' in e else ''})"
