"""``python -m aigis.cli`` runs the command line (used by the demo and the worker supervisor)."""

from aigis.cli import main

main()
