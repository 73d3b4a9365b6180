"""The one exception type users see.

Anything raised as :class:`GenzooError` is a problem with the user's input (an
argument, a file, a checkpoint), not a bug: the CLI prints its message as one line
on stderr and exits with status 2. Every other exception is a bug and keeps its
traceback.
"""


class GenzooError(Exception):
    """A bad argument, file or checkpoint; the message is one line fit for a user."""

    def __str__(self) -> str:
        return one_line(super().__str__())


def one_line(text: str) -> str:
    """``text`` with every unprintable character (a newline in a file name or an argument) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class DataError(GenzooError):
    """A data file that is missing, truncated, corrupt or of the wrong kind."""


class CheckpointError(GenzooError):
    """A run folder or saved model that cannot be read or written safely."""
