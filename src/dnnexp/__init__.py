"""dnnexp: config-driven experiments on training deep neural networks."""

__version__ = "0.1.0"
