"""The one way a command stops on a user's error: one line on stderr, exit status 2 (as argparse does)."""

import sys

# Bad input, whichever command meets it: the code argparse uses for a bad flag and the download
# job for a bad file, so a script can tell "fix the input" from a crash (1, with a traceback).
USER_ERROR_EXIT = 2


def user_error(command: str, message: object) -> SystemExit:
    """Prints ``imat <command>: error: <message>`` to stderr; returns the ``SystemExit`` to raise.

    Usage: ``raise user_error("compile", e) from None``.
    """
    print(f"imat {command}: error: {message}", file=sys.stderr)
    return SystemExit(USER_ERROR_EXIT)
