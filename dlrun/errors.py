"""The exceptions that dlrun answers with one line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: reported as one line, exit code 2, no traceback."""


class ConfigError(UserError):
    """A config value that is wrong; the message names the key and the fix."""


class DataError(UserError):
    """Data that cannot be loaded or used as asked; the message says what to fix."""
