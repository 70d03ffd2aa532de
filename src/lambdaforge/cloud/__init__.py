"""Working with a deployed stack (or the local cloud standing in for one) from the CLI."""
