"""The optional online mode: a Starlette app with adaptive micro-batching over ``kappa_batch``."""
