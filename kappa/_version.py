__version__ = "0.1.0"
# The name on the package index (`kappa` there is an unrelated project); the import name is `kappa`.
DISTRIBUTION = "kappa-engine"
