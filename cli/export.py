"""Where ``numbamlp export`` was defined before the commands moved to cli/commands/: it is
now ``numbamlp.cli.commands.export``.  This name stays while tests/test_export.py imports
``export_command`` from here.
"""

from numbamlp.cli.commands.export import export_command

__all__ = ["export_command"]
