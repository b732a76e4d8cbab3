"""Sub-commands of ``coarse-loftr``, one module each."""
