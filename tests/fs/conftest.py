from tests.fs.rig import rig

__all__ = ["rig"]
