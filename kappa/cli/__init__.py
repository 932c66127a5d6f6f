"""The ``kappa`` command line."""
