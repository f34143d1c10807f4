"""Errors that cross component boundaries."""


class UsageError(Exception):
    """Bad input from a person (CLI argument, config value): exit code 2, one line."""


class NotFound(Exception):
    """A named thing (workflow, account, key) does not exist."""


class Forbidden(Exception):
    """The caller is authenticated but may not touch this thing (other account)."""
