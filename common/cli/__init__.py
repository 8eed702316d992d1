"""What every ``soko`` command group shares: output formats and login options."""
