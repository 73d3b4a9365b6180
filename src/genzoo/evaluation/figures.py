"""Which figure of a run is shown, and how it is described: pure functions of the records a run folder keeps
(metrics.jsonl's lines, evals.jsonl's results, run.json's data fingerprints); :mod:`genzoo.runs` reads the files."""

from __future__ import annotations


def bound_mark(kind: str, mark: str = "<= ") -> str:
    """What stands before a figure of this kind: ``mark`` for a bound (the true -log P(x) is at most
    the figure), nothing for an exact one. Every listing writes a bound through this.

    Example:
        >>> bound_mark("bound") + "3.258", bound_mark("exact") + "84.07"
        ('<= 3.258', '84.07')
    """
    return mark if kind == "bound" else ""


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
    figure the exact one. None if there is none. A bound sampled per image (``t_samples``, ``draws``,
    ``ais_steps``: ``SAMPLED``) is an estimate with noise: the lowest of several draws would be biased low, so the
    one with the most draws (or AIS steps) stands (the latest among equals)."""
    whole = [e for e in evals if e.get("data") == data and e.get("split") == split and "nll_nats" in e
             and "subset_of" not in e and e.get("precision", "fp32") == "fp32"]
    if not whole:
        return None
    sampled = [e for e in whole if _draws(e)]
    if sampled:
        return max(enumerate(sampled), key=lambda ie: (_draws(ie[1])[1], ie[0]))[1]
    return min(whole, key=lambda e: e["nll_nats"])


# the entries of a kept evaluation that say it was sampled, and how many draws per image, in words
SAMPLED = {"t_samples": "time(s) per image", "draws": "draw(s) per image along the ODE",
           "ais_steps": "annealed importance sampling steps"}


def _draws(e: dict) -> tuple[str, int] | None:
    """(the entry, its count) of a figure estimated by Monte-Carlo draws per image, or None."""
    return next(((k, e[k]) for k in SAMPLED if k in e), None)


def estimator_note(e: dict) -> str:
    """The estimator of a kept figure where it is not the model's training one, as ", K = ..." words ('' else)."""
    if "iwae_k" in e:
        return f", IWAE K = {e['iwae_k']}"
    drawn = _draws(e)
    return f", {drawn[1]} {SAMPLED[drawn[0]]}" if drawn else ""


def eval_label(e: dict) -> str:
    """Where a kept `genzoo eval` figure comes from, in words."""
    drawn = _draws(e)
    what = (f"IWAE bound, K = {e['iwae_k']}" if "iwae_k" in e else
            f"the bound sampled at {drawn[1]} {SAMPLED[drawn[0]]}" if drawn else "genzoo eval")
    return f"{what}, full test set ({e['count']} images{', ' + e['date'][:10] if 'date' in e else ''})"
