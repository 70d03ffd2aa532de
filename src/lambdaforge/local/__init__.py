"""Local-only code: the embedded cloud, the local executors and the local API gateway.

Nothing outside this package knows it runs locally, except the CLI's choice of target
(`lambdaforge.cli.target`); below that choice a local stack is a `StackRef` like any other.
"""
