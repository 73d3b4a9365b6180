"""The names of the files a saved model's folder holds: ``models/folder.py`` writes and reads them, ``runs.py`` lists
and checks them. Below both and free of torch, so that a listing of run folders starts without it."""

CONFIG_FILE = "config.json"  # the model's name and its constructor's keyword arguments
WEIGHTS_FILE = "model.safetensors"
EMA_WEIGHTS_FILE = "ema.safetensors"  # a moving average of the weights (genzoo train --ema), where one was kept
CODES_OF_FILE = "codes_of.json"  # a prior of a VQ-VAE's codes: the way to its VQ-VAE
