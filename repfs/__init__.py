"""repfs: a FUSE filesystem over replicated, encrypted object storage."""

__version__ = "0.1.0"
