"""Service definition: ``BentoService`` and the ``@env``, ``@artifacts``, ``@api`` and
``@web_static_content`` decorators. Pure metadata; no I/O happens here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from kappa.errors import ArtifactError, InputError, MissingDependencyError
from kappa.frameworks.base import ArtifactCollection, BaseArtifact
from kappa.types import InferenceTask

if TYPE_CHECKING:
    import pyarrow as pa

    from kappa.adapters.base import InputAdapter, OutputAdapter
    from kappa.bundle.env import EnvSpec
    from kappa.bundle.manifest import Manifest
    from kappa.inference import BatchOutcome, Headers

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="BentoService")
C = TypeVar("C", bound=type["BentoService"])

DEFAULT_MB_MAX_BATCH_SIZE = 1000
DEFAULT_MB_MAX_LATENCY_MS = 300
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class APISpec:
    """What ``@kappa.api`` declared about one method."""

    name: str
    func: Callable[..., Any]
    input: InputAdapter
    output: OutputAdapter
    batch: bool
    mb_max_batch_size: int
    mb_max_latency: int
    takes_tasks: bool
    doc: str
    batch_given: bool = True  # False: ``batch`` was left to its default

    def with_batch(self, batch: bool) -> APISpec:
        """This API in the batch mode a bundle recorded (one saved when the default was True)."""
        import dataclasses

        params = inspect.signature(self.func).parameters
        return dataclasses.replace(self, batch=batch, takes_tasks=("tasks" if batch else "task") in params)


class APIMethod(Generic[S, P, R]):
    """The class attribute ``@kappa.api`` leaves behind; instances see an :class:`InferenceAPI`."""

    def __init__(self, spec: APISpec) -> None:
        self.spec = spec
        self.__doc__ = spec.doc

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> APIMethod[S, P, R]: ...
    @overload
    def __get__(self, obj: S, owner: type[Any]) -> InferenceAPI[P, R]: ...
    def __get__(self, obj: S | None, owner: type[Any]) -> APIMethod[S, P, R] | InferenceAPI[P, R]:
        if obj is None:
            return self
        api: InferenceAPI[P, R] = obj.inference_apis[self.spec.name]
        return api


class InferenceAPI(Generic[P, R]):
    """An API bound to a service instance.

    Calling it runs the user function in-process (``svc.predict(df)``);
    :meth:`infer` scores one ``pyarrow.RecordBatch`` the way every engine does.
    """

    def __init__(self, service: BentoService, spec: APISpec) -> None:
        self.service = service
        self.spec = spec
        self._func = spec.func.__get__(service, type(service))

    name = property(lambda self: self.spec.name)
    input_adapter = property(lambda self: self.spec.input)
    output_adapter = property(lambda self: self.spec.output)
    batch = property(lambda self: self.spec.batch)
    mb_max_batch_size = property(lambda self: self.spec.mb_max_batch_size)
    mb_max_latency = property(lambda self: self.spec.mb_max_latency)
    doc = property(lambda self: self.spec.doc)

    @property
    def service_name(self) -> str:
        return self.service.name

    def call_batch(self, value: Any, tasks: Sequence[InferenceTask[Any]]) -> Any:
        if self.spec.takes_tasks:
            return self._func(value, tasks=tasks)
        return self._func(value)

    def call_single(self, item: Any, task: InferenceTask[Any]) -> Any:
        if self.spec.takes_tasks:
            return self._func(item, task=task)
        return self._func(item)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if len(args) != 1 or kwargs:
            result: R = self._func(*args, **kwargs)
            return result
        payload = args[0]
        adapter = self.spec.input
        if not self.spec.batch:
            item = adapter.split(adapter.coerce([payload]))[0]
            single: R = self.call_single(item, InferenceTask(data=payload))
            return single
        from kappa.adapters.base import result_length
        from kappa.inference import TaskBatch, check_length

        value = adapter.coerce(payload)
        size = result_length(value) or 0
        tasks = TaskBatch(size)
        results: R = self.call_batch(value, tasks)
        check_length(self, results, size, len(tasks.discarded()))
        return results

    def infer(self, batch: pa.RecordBatch, headers: Headers = None) -> BatchOutcome:
        from kappa.inference import infer

        return infer(self, batch, headers)

    def __repr__(self) -> str:
        return f"<InferenceAPI {self.service_name}.{self.name} {self.spec.input.describe()}>"


def api(
    *,
    input: InputAdapter | None = None,
    output: OutputAdapter | None = None,
    batch: bool | None = None,
    api_name: str | None = None,
    mb_max_batch_size: int = DEFAULT_MB_MAX_BATCH_SIZE,
    mb_max_latency: int = DEFAULT_MB_MAX_LATENCY_MS,
) -> Callable[[Callable[Concatenate[S, P], R]], APIMethod[S, P, R]]:
    """Declare a method as an inference API.

    With ``batch=True`` the function takes a whole batch (a DataFrame for
    ``DataframeInput``, a list for the others) and returns one result per
    item; with ``batch=False`` (the default, as documented) it takes one item. A ``tasks`` (batch) or
    ``task`` (single) parameter receives the :class:`~kappa.types.InferenceTask`
    objects. ``mb_max_batch_size`` (rows) and ``mb_max_latency`` (ms) are the
    online micro-batching defaults.
    """
    batch_given = batch is not None
    batch = bool(batch)  # False by default, as documented
    if input is None:
        raise InputError("@kappa.api needs input=..., e.g. input=DataframeInput()")
    if not hasattr(input, "from_arrow"):
        raise InputError(f"@kappa.api input must be an input adapter, got {type(input).__name__}")
    if batch and not input.batch_supported:
        raise InputError(f"{input.describe()} does not support batch=True")
    if not batch and not input.single_supported:
        raise InputError(
            f"{input.describe()} supports batch=True only: its function takes a whole batch (a DataFrame); "
            f"declare it as @kappa.api(input={input.describe()}(...), batch=True)"
        )
    if mb_max_batch_size < 1 or mb_max_latency < 1:
        raise InputError("@kappa.api: mb_max_batch_size and mb_max_latency must be positive")

    def decorate(func: Callable[Concatenate[S, P], R]) -> APIMethod[S, P, R]:
        from kappa.adapters.outputs import DefaultOutput

        name = api_name or func.__name__
        if not _IDENTIFIER.match(name):
            raise InputError(f"API name {name!r} must be a Python identifier")
        params = inspect.signature(func).parameters
        spec = APISpec(
            name=name,
            func=func,
            input=input,
            output=output if output is not None else DefaultOutput(),
            batch=batch,
            mb_max_batch_size=mb_max_batch_size,
            mb_max_latency=mb_max_latency,
            takes_tasks=("tasks" if batch else "task") in params,
            doc=inspect.getdoc(func) or "",
            batch_given=batch_given,
        )
        return APIMethod(spec)

    return decorate


def artifacts(declared: Sequence[BaseArtifact]) -> Callable[[C], C]:
    """Declare the artifacts (models) a service needs, by name."""
    items = list(declared)
    for item in items:
        if not isinstance(item, BaseArtifact):
            raise ArtifactError(f"@kappa.artifacts takes artifact objects, got {type(item).__name__}")
    names = [a.name for a in items]
    if len(set(names)) != len(names):
        raise ArtifactError(f"@kappa.artifacts: duplicate artifact names in {names}")

    def decorate(cls: C) -> C:
        cls._artifact_specs = tuple(items)
        return cls

    return decorate


def env(
    *,
    infer_pip_packages: bool = False,
    pip_packages: Sequence[str] | None = None,
    requirements_txt_file: str | None = None,
    conda_channels: Sequence[str] | None = None,
    conda_dependencies: Sequence[str] | None = None,
    conda_override_channels: bool = False,
    docker_base_image: str | None = None,
    setup_sh: str | None = None,
    auto_pip_dependencies: bool | None = None,
) -> Callable[[C], C]:
    """Declare the environment a service needs; ``requirements_txt_file`` overrides the pip options.

    ``auto_pip_dependencies`` is the documented alias of ``infer_pip_packages``.
    """
    from kappa.bundle.env import EnvSpec

    if auto_pip_dependencies is not None:
        infer_pip_packages = infer_pip_packages or auto_pip_dependencies
    spec = EnvSpec(
        infer_pip_packages=infer_pip_packages,
        pip_packages=tuple(pip_packages or ()),
        requirements_txt_file=requirements_txt_file,
        conda_channels=tuple(conda_channels or ()),
        conda_dependencies=tuple(conda_dependencies or ()),
        conda_override_channels=conda_override_channels,
        docker_base_image=docker_base_image,
        setup_sh=setup_sh,
    )

    def decorate(cls: C) -> C:
        cls._env = spec
        return cls

    return decorate


def web_static_content(path: str) -> Callable[[C], C]:
    """Ship a folder of static files (served at ``/`` online) with the bundle."""

    def decorate(cls: C) -> C:
        cls._web_static_content = path
        return cls

    return decorate


class BentoService:
    """Base class of prediction services.

    Subclass it, declare artifacts and APIs with the decorators, ``pack`` the
    trained models, then ``save()`` or ``save_to_dir(path)`` a bundle.
    """

    _artifact_specs: tuple[BaseArtifact, ...] = ()
    _env: EnvSpec | None = None
    _web_static_content: str | None = None
    _api_methods: dict[str, APIMethod[Any, Any, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        methods: dict[str, APIMethod[Any, Any, Any]] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                if isinstance(value, APIMethod):
                    methods[value.spec.name] = value
        cls._api_methods = methods

    def __init__(self) -> None:
        self._artifacts = ArtifactCollection({a.name: a.fresh() for a in type(self)._artifact_specs})
        self._apis: dict[str, InferenceAPI[Any, Any]] = {
            name: InferenceAPI(self, method.spec) for name, method in type(self)._api_methods.items()
        }
        self._version: str | None = None
        self._bundle_path: str | None = None
        self._labels: dict[str, str] = {}
        self._manifest: Manifest | None = None
        self._dev_server: Any = None

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def version(self) -> str | None:
        """The bundle version once saved or loaded, else ``None``."""
        return self._version

    @property
    def bundle_path(self) -> str | None:
        return self._bundle_path

    @property
    def labels(self) -> Mapping[str, str]:
        return dict(self._labels)

    @property
    def manifest(self) -> Manifest | None:
        """The manifest of the bundle this service was loaded from or saved to."""
        return self._manifest

    @property
    def artifacts(self) -> ArtifactCollection:
        return self._artifacts

    @property
    def inference_apis(self) -> Mapping[str, InferenceAPI[Any, Any]]:
        return self._apis

    @property
    def env(self) -> EnvSpec:
        from kappa.bundle.env import EnvSpec

        return type(self)._env or EnvSpec()

    def get_inference_api(self, name: str) -> InferenceAPI[Any, Any]:
        try:
            return self._apis[name]
        except KeyError:
            raise InputError(f"{self.name} has no API {name!r}; its APIs are {sorted(self._apis)}") from None

    def pack(self, name: str, obj: Any, metadata: Mapping[str, Any] | None = None) -> BentoService:
        """Put a trained model into the artifact slot ``name``."""
        if name not in self._artifacts:
            raise ArtifactError(
                f"{self.name} has no artifact named {name!r}; declared: {sorted(self._artifacts)}"
            )
        self._artifacts[name].pack(obj, metadata=metadata)
        return self

    def save_to_dir(self, path: str) -> str:
        """Write this service as a bundle into the folder ``path`` (which must not exist)."""
        from kappa.bundle.save import save_to_dir

        return save_to_dir(self, path)

    def save(self, labels: Mapping[str, str] | None = None, version: str | None = None) -> str:
        """Save a new version of this service into the configured repository; returns its location."""
        from kappa.repository import open_repository

        return open_repository().save(self, labels=labels, version=version)

    def start_dev_server(self, port: int = 5000, host: str = "127.0.0.1") -> str:
        """Serve this in-memory service over HTTP on ``host:port`` (the same app as `kappa serve`),
        in a background thread, for trying it from a notebook; returns its URL. Needs the
        online extra (`pip install 'kappa-engine[online]'`)."""
        from importlib.metadata import entry_points

        if self._dev_server is not None:
            raise InputError(f"{self.name} already has a dev server; call stop_dev_server() first")
        found = [ep for ep in entry_points(group="kappa.dev_server") if ep.name == "uvicorn"]
        if not found:
            raise MissingDependencyError(
                "the dev server needs Kappa's online part; run `pip install 'kappa-engine[online]'`"
            )
        try:
            start = found[0].load()
        except ImportError as exc:
            raise MissingDependencyError(
                f"the dev server needs {exc.name or 'the online extra'}; "
                "run `pip install 'kappa-engine[online]'`"
            ) from None
        server = start(self, port=port, host=host)
        self._dev_server = server
        return str(server.url)

    def stop_dev_server(self) -> None:
        """Stop the server :meth:`start_dev_server` started (in-flight requests finish first)."""
        server = self._dev_server
        if server is not None:
            self._dev_server = None
            server.stop()

    def __repr__(self) -> str:
        version = f":{self._version}" if self._version else ""
        return f"<{self.name}{version} apis={sorted(self._apis)} artifacts={sorted(self._artifacts)}>"
