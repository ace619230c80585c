"""basicvsr-archival: BasicVSR++ video super-resolution for ML-based video archival."""

__version__ = "0.1.0"
