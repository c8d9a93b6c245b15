"""Command-line interface: one module per ``pixer`` sub-command."""
