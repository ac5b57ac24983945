"""edgegen: run generative models fast on the device in front of you, offline."""
__version__ = "0.1.0"
