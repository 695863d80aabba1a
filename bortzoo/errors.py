"""One exception type for user mistakes, so the CLI can print them without a traceback."""


class BortzooError(ValueError):
    """A user-facing error: the message names the bad value and what would be valid."""


def first_line(err: BaseException) -> str:
    """The first line of an error's message (or its type's name): what a one-line report quotes."""
    return (str(err).strip() or type(err).__name__).splitlines()[0]
