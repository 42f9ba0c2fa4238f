"""User-facing errors. The CLI prints them as one line and exits with code 2."""


class ClcaDeployError(Exception):
    """A problem with the user's input or environment, with a message saying what to do.

    The CLI prints it as one line and exits with ``exit_code``: 2 for bad input; a subclass for a
    failure that is not the input's (a server that died while serving) sets its own.
    """

    exit_code = 2


class ConfigError(ClcaDeployError):
    """Settings that cannot describe a valid CLCA model (bad keep rate, image size, name...)."""


class CheckpointError(ClcaDeployError):
    """A checkpoint that is missing, corrupt, unsafe or does not fit the model."""


class UnsupportedError(ClcaDeployError):
    """A valid request this version cannot carry out (a method not implemented yet...)."""
