"""`python -m lambdaforge.training`: the one training entry point."""

import sys

from lambdaforge.training.harness import main

if __name__ == "__main__":
    sys.exit(main())
