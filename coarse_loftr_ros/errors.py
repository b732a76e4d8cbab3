"""User-facing errors: each message is one line that names the problem and the fix."""


class CoarseLoftrError(Exception):
    """Base class of the errors this package raises for bad input or setup."""


class ImageError(CoarseLoftrError, ValueError):
    """An image that cannot be read, decoded or matched."""


class ModelError(CoarseLoftrError, ValueError):
    """A model file that is missing, corrupt or does not fit."""


class BackendUnavailableError(CoarseLoftrError, RuntimeError):
    """A backend whose library (torch, TensorRT, pycuda) or device is missing."""

    @classmethod
    def from_import(cls, command: str, error: ImportError, install: str) -> "BackendUnavailableError":
        """``<command> needs <module> (<why the import failed>); install it with <install>``, one
        line: the import's own message tells a missing package from one that fails to load."""
        why = (str(error).splitlines() or [""])[0]
        return cls(f"{command} needs {error.name} ({why}); install it with {install}")


class OptionError(CoarseLoftrError, ValueError):
    """An option or argument with a value outside its documented range (a threshold of 1.5)."""


class OutputPathError(CoarseLoftrError, ValueError):
    """An output path that cannot be written (a folder, a missing parent, a wrong file type)."""


class CheckpointSecurityError(ModelError):
    """A checkpoint whose pickle holds objects beyond tensors and plain containers (it could run code)."""
