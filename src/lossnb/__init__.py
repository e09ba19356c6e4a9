"""lossnb: classification losses, a CIFAR-style benchmark engine and the studies built on them."""
__version__ = "0.1.0"
