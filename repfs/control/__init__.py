"""The control plane: what administrators change and watch on a running filesystem.

Pool lifecycle (`pools`), the online scrub (`scrub`), the data key's secret (`keys`) and
the status snapshot (`status`) are typed operations with typed results. The transports
(admin socket, metrics, CLI) parse requests, call them and render their results; they
hold no rules of their own. Errors are `repfs.errors.RequestError`s.
"""
