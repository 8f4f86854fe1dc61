"""`python -m aitrading` runs the CLI."""

from aitrading.cli import main

main()
