"""Local-only code: the embedded cloud, the local executors and the local API gateway.

Nothing outside this package knows it runs locally.
"""
