"""The HTML report: ``page`` (the page: leaderboards per dataset, curves, pictures,
out-of-distribution histograms), ``comparisons`` (bits/dim against FID, curves against wall
clock, samples beside their nearest training images) and ``views`` (completions,
reconstructions and interpolations as image batches, which the CLI also writes as PNGs)."""
