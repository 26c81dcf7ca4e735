"""Entry points: the ``wardwatch`` command and its subcommands (the top layer)."""
