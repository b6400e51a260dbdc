"""Errors minbert raises for bad user input: each message names the file (and line, field) at fault."""


class MinbertError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class CheckpointError(MinbertError):
    """A model directory or weight file that cannot be loaded (missing, malformed, hostile)."""


class ConfigError(MinbertError):
    """A configuration value that is unknown, of the wrong type or impossible."""


class DataError(MinbertError):
    """A data file that cannot be read, or a row that breaks the file's format."""


class RunFailed(MinbertError):
    """Runs of a sweep (ablate --jobs, tune --jobs) that failed in their own processes: each one's message."""
