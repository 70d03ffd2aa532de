"""`python -m lambdaforge.cli`."""

from lambdaforge.cli import main

main()
