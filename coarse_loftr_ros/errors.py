"""User-facing errors: each message is one line that names the problem and the fix."""


class CoarseLoftrError(Exception):
    """Base class of the errors this package raises for bad input or setup."""


class ImageError(CoarseLoftrError, ValueError):
    """An image that cannot be read, decoded or matched."""


class ModelError(CoarseLoftrError, ValueError):
    """A model file that is missing, corrupt or does not fit."""


class BackendUnavailableError(CoarseLoftrError, RuntimeError):
    """A backend whose library (torch, TensorRT, pycuda) or device is missing."""


class OptionError(CoarseLoftrError, ValueError):
    """An option or argument with a value outside its documented range (a threshold of 1.5)."""


class OutputPathError(CoarseLoftrError, ValueError):
    """An output path that cannot be written (a folder, a missing parent, a wrong file type)."""


class CheckpointSecurityError(ModelError):
    """A checkpoint whose pickle holds objects beyond tensors and plain containers (it could run code)."""
