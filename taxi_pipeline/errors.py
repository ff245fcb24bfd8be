"""Errors the CLI turns into exit codes: ConfigError → 2 (fix the input), LoadError → 1 (retry the load)."""


class TaxiPipelineError(Exception):
    """Base of the package's errors; the message is one line naming what to fix."""

    exit_code = 1


class ConfigError(TaxiPipelineError, ValueError):
    """Bad arguments or configuration: nothing was loaded."""

    exit_code = 2


class LoadError(TaxiPipelineError):
    """A month could not be loaded or did not reconcile; its previous rows and state are kept."""

    exit_code = 1


class DownloadError(LoadError):
    """A file could not be fetched completely."""


class FileFormatError(LoadError):
    """A file could not be read as the expected layout (truncated gzip, missing columns, bad values)."""
