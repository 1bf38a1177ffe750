"""Errors that mean "the user's input is wrong": the CLI turns them into one line and exit code 2."""


def shorten_list(items: list[str], limit: int) -> str:
    """`a, b, c (and 7 more)`: error messages stay one readable line however many items fail."""
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


class VoxsegError(Exception):
    """Base class for problems with user input; the message must name the file or option at fault."""


class ConfigError(VoxsegError):
    """An option has a bad value or options contradict each other."""


class DataError(VoxsegError):
    """A data file or folder is missing, unreadable or inconsistent."""


class Stopped(Exception):
    """A run stopped on request (its stop event was set) before it finished: not an error."""
