"""The built-in catalog: one module per patch, discovered with :mod:`pkgutil` (see :mod:`hermes_patch.registry`)."""
