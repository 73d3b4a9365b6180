"""Are a model's codes useful features? A linear probe, and the baselines it must beat.

A logistic regression (scikit-learn) is fit on frozen features of the training split and
scored on the test split, for: the model's codes (``encode``), the raw pixels, PCA of the
pixels to the codes' width, and a Gaussian random projection of the pixels to that width.
"""

from __future__ import annotations



def linear_probe(train_x, train_y, test_x, test_y) -> float:
    """Test accuracy of a standardised multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def compare_to_baselines(train_codes, train_y, test_codes, test_y, train_pixels, test_pixels, seed: int = 0,
            log=lambda msg: None) -> dict:
    """{name: {"width", "accuracy"}} for codes, raw_pixels, pca and random_projection (same width as the codes).
    ``log`` hears of each of the four fits as it starts (they can take a while on big splits)."""
    from sklearn.decomposition import PCA
    from sklearn.random_projection import GaussianRandomProjection

    width = train_codes.shape[1]
    log(f"probe: fitting on the codes ({width} wide), 1 of 4")
    out = {"codes": {"width": width, "accuracy": linear_probe(train_codes, train_y, test_codes, test_y)}}
    log(f"probe: fitting on the raw pixels ({train_pixels.shape[1]} wide), 2 of 4")
    out["raw_pixels"] = {"width": train_pixels.shape[1], "accuracy": linear_probe(train_pixels, train_y, test_pixels,
                                                                                  test_y)}
    reduced = min(width, train_pixels.shape[1], len(train_pixels))
    for i, (name, reducer) in enumerate((("pca", PCA(reduced, random_state=seed)),
                                         ("random_projection", GaussianRandomProjection(width, random_state=seed)))):
        log(f"probe: fitting on a {name.replace('_', ' ')} of the pixels, {3 + i} of 4")
        tr = reducer.fit_transform(train_pixels)
        out[name] = {"width": int(tr.shape[1]),
                     "accuracy": linear_probe(tr, train_y, reducer.transform(test_pixels), test_y)}
    return out


