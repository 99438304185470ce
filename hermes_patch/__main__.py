"""``python -m hermes_patch`` runs the command line."""

from hermes_patch.cli import main

main()
