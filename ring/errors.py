"""One exception family for the ring, so the CLI and the services catch ring problems
without catching programming errors."""


class RingError(Exception):
    """Bad input to the builder or the ring: the message is meant for an operator."""


class RingFileError(RingError):
    """A ring or builder file that is missing, truncated, corrupted or of another kind."""
