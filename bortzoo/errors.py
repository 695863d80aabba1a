"""One exception type for user mistakes, so the CLI can print them without a traceback."""


class BortzooError(ValueError):
    """A user-facing error: the message names the bad value and what would be valid."""
