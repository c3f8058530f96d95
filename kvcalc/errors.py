"""The user-facing errors: each prints as one line on stderr and exits 1."""


class KvcalcError(Exception):
    """A problem the user can fix: bad preset, unknown model, missing extra."""


class UnknownModelError(KvcalcError):
    pass


class PresetError(KvcalcError):
    """A preset or config file that cannot be read or is invalid; names the file and field."""
