"""`python -m userapi` runs the CLI."""

from userapi.cli import main

main()
