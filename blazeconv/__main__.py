"""``python -m blazeconv`` runs the CLI."""

from .cli import main

main()
