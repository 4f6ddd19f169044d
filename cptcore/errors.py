"""Errors a command reports as one line with exit code 2 (ConfigError and RunError live beside their data)."""


class UsageError(ValueError):
    """Bad input detected by a command; printed as one line, exit code 2."""
