"""CPT Studio core: config, data, mixing, training, evaluation and runs for continued pre-training."""
__version__ = "0.1.0"
