"""sslbench: benchmark self-supervised representation learning under one declared protocol."""

from sslbench.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "__version__"]
