"""Errors that mean "the user's input is wrong", as opposed to a bug.

The CLI prints these as one line; the napari plugin shows them as one notification.
"""


class CcountError(Exception):
    """Bad input or an impossible request; the message names the problem in one line."""


class InputError(CcountError, ValueError):
    """A parameter, file or array is not acceptable (the message names which and why)."""
