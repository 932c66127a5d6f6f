"""The one exception hierarchy of Kappa.

Every error a user can cause derives from :class:`KappaError` and says what is
wrong and what to do about it. No HTTP codes here: ``kappa_online`` maps these
classes to responses in one handler, and the CLI wraps them once.
"""

from __future__ import annotations

from kappa._version import DISTRIBUTION


class KappaError(Exception):
    """Base class of every error Kappa raises on purpose."""


class ConfigError(KappaError):
    """A setting is missing, unknown or malformed."""


class BundleError(KappaError):
    """A bundle cannot be saved, found, verified or loaded."""


class BundleIntegrityError(BundleError):
    """A bundle file does not match the digest recorded in its manifest."""


class ArtifactError(KappaError):
    """An artifact is declared, packed or stored wrongly."""


class MissingDependencyError(KappaError):
    """An optional package that a feature needs is not installed."""


class InputError(KappaError):
    """Input data does not fit what an API accepts."""


class UnsupportedMediaType(InputError):
    """A request's content type is not one the API's input adapter reads."""


class InferenceError(KappaError):
    """A user API function misbehaved (raised, or returned the wrong shape)."""


class RepositoryError(KappaError):
    """The model repository cannot store, find or delete a bundle."""


class MetadataUnavailable(RepositoryError):
    """The metadata database did not answer (down, restarting, unreachable). ``in_doubt``: the
    connection was lost during a commit, so the change may or may not have been made."""

    def __init__(self, message: str, in_doubt: bool = False) -> None:
        super().__init__(message)
        self.in_doubt = in_doubt


class BundleNotFound(BundleError):
    """No ready bundle has this name (and version)."""


class VersionExists(RepositoryError):
    """The version is taken: versions are never reused."""


class RunNotFound(RepositoryError):
    """No scoring run with this id is recorded."""


class RunConflict(RepositoryError):
    """A run id already recorded for another bundle."""


class RegistryError(RepositoryError):
    """The registry server (Gamma) refused a call or cannot be reached."""


class RegistryUnavailable(RegistryError):
    """The registry server cannot be reached (down, wrong URL, network)."""


class AccessDenied(RegistryError):
    """The registry server wants a token (401), or a token with a wider scope (403)."""


class SelectorError(InputError):
    """A label selector is malformed; the message points at the bad part."""


def missing_dependency(package: str, extra: str, feature: str) -> MissingDependencyError:
    """Build the error raised when an optional package is not importable."""
    return MissingDependencyError(
        f"{feature} needs the package {package!r}, which is not installed; "
        f"run `pip install '{DISTRIBUTION}[{extra}]'` (or `pip install {package}`)"
    )


# Storage clients whose errors do not derive from OSError: botocore (s3fs), aiohttp (the HTTP
# under s3fs, gcsfs and fsspec's http), and fsspec's own timeout.
_STORE_ERRORS = (
    ("botocore.exceptions", "BotoCoreError"),
    ("aiohttp.client_exceptions", "ClientError"),
    ("fsspec.exceptions", "FSTimeoutError"),
)


def is_store_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a file system or object store failing (a full disk, a store that is
    down or does not answer), as opposed to a bug or bad input: such errors get one line that
    names what failed. The clients' classes are looked up by name, so nothing is imported."""
    if isinstance(exc, OSError):
        return True
    return any((kind.__module__, kind.__name__) in _STORE_ERRORS for kind in type(exc).__mro__)


def store_failure(exc: BaseException) -> tuple[str, str | None]:
    """What a store error says, and the file it names if it names one (an OSError's
    ``strerror`` and ``filename``; a storage client's error says it all in its text)."""
    return str(getattr(exc, "strerror", None) or exc), getattr(exc, "filename", None)
