"""sodakit: a PyTorch-native toolkit for native discrete-audio foundation models."""

__version__ = "0.1.0"
