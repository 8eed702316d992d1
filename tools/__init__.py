"""The ``soko`` command line, the ``soko up`` all-in-one supervisor, benchmarks and operator scripts."""
