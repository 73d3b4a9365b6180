# genzoo: `make demo` and `make test` work on a fresh machine (Python 3.11, the package registries).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
GENZOO := $(VENV)/bin/genzoo
STAMP  := $(VENV)/.installed

.PHONY: install data browser demo test bench clean catalog

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU wheel on disk; an unpinned torch would pull a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST from Debian where we can (root + apt-get); elsewhere the loader downloads it.
data:
	@if [ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then echo "fashion-mnist: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) || echo "fashion-mnist: apt-get failed; skipped"; \
	else echo "fashion-mnist: not root, skipped (downloaded on first use)"; fi

# Headless Chromium + ChromeDriver from Debian for the report's browser test (root + apt-get; else the test skips).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then echo "chromium: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || echo "chromium: apt-get failed; the browser test will skip"; \
	else echo "chromium: not root, skipped (the browser test will skip)"; fi

# Trains a class-conditional Gated PixelCNN and a VAE on the embedded 8x8 digits, evaluates,
# samples and completes, and writes the HTML report comparing the two.
demo: $(STAMP) data
	rm -rf demo
	$(GENZOO) train gated-pixelcnn --data digits --conditional --out demo/gated-pixelcnn --epochs 40 \
		--hidden-channels 32 --num-layers 5 --head-channels 64 --batch-size 32 --warmup-steps 50
	$(GENZOO) eval demo/gated-pixelcnn
	$(GENZOO) sample demo/gated-pixelcnn -n 100 -o demo/samples.png
	$(GENZOO) complete demo/gated-pixelcnn -n 10 --samples 4 -o demo/completions.png
	$(GENZOO) train vae --data digits --out demo/vae --epochs 40 --latent-dim 8 --width 256 --batch-size 32 --warmup-steps 50
	$(GENZOO) eval demo/vae --iwae-k 1000
	$(GENZOO) report demo/gated-pixelcnn demo/vae -o demo/report.html
	# the shipped one-hour models (pretrained/): samples at once, completions where binarized MNIST is here
	$(GENZOO) sample pretrained/row-lstm-binarized-mnist -n 64 -o demo/pretrained-row-lstm.png
	$(GENZOO) sample pretrained/realnvp-fashion-mnist -n 64 --temperature 0.7 -o demo/pretrained-realnvp.png
	@if $(PY) -c "import genzoo; genzoo.data.load('binarized-mnist', 'test')" 2>/dev/null; then \
		$(GENZOO) complete pretrained/row-lstm-binarized-mnist -n 8 --samples 4 -o demo/pretrained-completions.png; \
	else echo "demo: binarized MNIST not found; pretrained completions skipped"; fi
	@echo "demo: outputs in demo/ (samples.png: column c is class c; completions.png: original, visible half, 4 completions)"
	@echo "demo: open $(CURDIR)/demo/report.html (leaderboard, curves, samples, completions, reconstructions)"
	@echo "demo: pretrained-*.png: samples of the shipped Row LSTM (84.07 nats) and RealNVP (3.26 bits/dim), completions of the Row LSTM"

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/train_speed.py

clean:
	rm -rf $(VENV) demo .pytest_cache

# The registry's and the parsers' copies that listings and --help read without torch (tests/test_catalog.py checks them).
catalog: $(STAMP)
	$(PY) -m genzoo.catalog
	$(PY) -c 'import genzoo.cli; genzoo.cli.write_help_shapes()'
