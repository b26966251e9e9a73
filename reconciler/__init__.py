"""mico-reconciler: a declarative GitOps reconciler for MICO applications."""

__version__ = "0.1.0"
