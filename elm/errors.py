"""Errors that reach the user as one line and exit code 2."""


class UserError(Exception):
    """Bad input or an unusable setup: the CLI prints the message on one line, exits 2."""
