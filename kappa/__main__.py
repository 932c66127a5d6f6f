"""``python -m kappa``: the ``kappa`` command line."""

from kappa.cli.main import main

if __name__ == "__main__":
    main()
