"""Exceptions raised for user mistakes. The CLI prints them as one line, never a traceback."""


class OFAError(Exception):
    """Base class of every error caused by bad input, files or settings."""


class InputError(OFAError, ValueError):
    """An input (image, text, box, argument) is missing, malformed or out of range."""


class CheckpointError(OFAError):
    """A checkpoint file or folder is missing, damaged or does not match the model."""
