"""Exceptions shared by every beltcast package.

Each message says what was wrong, where, what was expected and what came in.
"""


class BeltcastError(Exception):
    """Base class of every error beltcast raises on purpose."""


class ConfigError(BeltcastError, ValueError):
    """A config file is missing, unreadable, or holds an invalid setting."""


class DataSyncError(BeltcastError):
    """A raw file could not be fetched, or its checksum does not match the manifest."""


class SourceFormatError(BeltcastError, ValueError):
    """A source file does not have the sheets, columns or values its reader expects."""


class CountyCodeError(BeltcastError, ValueError):
    """A county code is malformed or unknown in the vintage it claims."""


class OutputPathError(BeltcastError):
    """An output path is a directory, or cannot be created or written."""
