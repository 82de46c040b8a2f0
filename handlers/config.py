"""The repository's `k8s-ee.yaml` (SPEC 3): parsing, validation, defaults.

Every problem found is reported at once, each with the dotted path of the field
(`databases.postgresql.storage`, `env.1BAD`, `envFrom[0]`) and a message a
developer can act on, because the text ends up in a pull-request comment.
Unknown keys are errors, so that a misspelt option never silently does nothing.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from handlers import quota
from handlers.durations import UNITS
from providers.fields import IMAGE_REPOSITORY

if TYPE_CHECKING:
    import yaml

FILE_NAME = "k8s-ee.yaml"

PROJECT_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$"
CPU_PATTERN = r"^[0-9]+(m|[0-9]*)?$"
MEMORY_PATTERN = r"^[0-9]+(Mi|Gi)$"
STORAGE_PATTERN = r"^[0-9]+(Mi|Gi|Ti)$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
WRITABLE_DIR_PATTERN = r"^/[a-zA-Z0-9._/-]+$"
INTERVAL_PATTERN = r"^[0-9]+(s|m|h)$"
PATH_PATTERN = r"^/"
HIBERNATE_AFTER_PATTERN = r"^[0-9]+(m|h|d)$"
# A repository's `hibernation.after` lies between these (seconds).
MIN_HIBERNATE_AFTER = 300
MAX_HIBERNATE_AFTER = 7 * 86400
# An image tag, since the version ends up in one.
VERSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_ANNOTATION_KEY = re.compile(
    rf"^(?:(?P<prefix>{_DNS_LABEL}(?:\.{_DNS_LABEL})*)/)?(?P<name>[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$"
)


class Trigger(StrEnum):
    AUTOMATIC = "automatic"
    # Deploy only after a `/deploy-preview` command.
    ON_DEMAND = "on-demand"


class Engine(StrEnum):
    POSTGRESQL = "postgresql"
    MONGODB = "mongodb"
    REDIS = "redis"
    MINIO = "minio"
    MARIADB = "mariadb"


# The fixed order databases are listed, rendered and applied in.
ENGINE_ORDER: tuple[Engine, ...] = tuple(Engine)

DEFAULT_VERSIONS: dict[Engine, str | None] = {
    Engine.POSTGRESQL: "16",
    Engine.MONGODB: "7.0.14",
    Engine.REDIS: "7.4",
    # None: the image the MinIO operator pins for its Tenants.
    Engine.MINIO: None,
    Engine.MARIADB: "11.4",
}
DEFAULT_STORAGE = "1Gi"


# ---------------------------------------------------------------- field types


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _show(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _show(value: Any) -> str:
    """A user's value, quoted and cut short, for an error message."""
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    return _kind(value)


def _number_to_str(value: Any) -> Any:
    # `cpu: 1` and `version: 16` are natural YAML; take whole numbers as written.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        raise PydanticCustomError(
            "quote_number",
            "must be a string: quote it in YAML (got {got}; an unquoted 11.10 would read as 11.1)",
            {"got": _kind(value)},
        )
    return value


def _pattern(pattern: str) -> StringConstraints:
    return StringConstraints(pattern=pattern)


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise PydanticCustomError(
            "dns_name",
            "must be a Kubernetes object name (lower-case letters, digits, '-' and '.') (got {got})",
            {"got": _show(value)},
        )
    return value


def _annotation_key(value: str) -> str:
    match = _ANNOTATION_KEY.fullmatch(value)
    if (
        not match
        or len(match.group("name")) > 63
        or (match.group("prefix") is not None and len(match.group("prefix")) > 253)
    ):
        raise PydanticCustomError(
            "annotation_key",
            "is not a valid annotation key ([prefix/]name, name of letters, digits, '-', '_', '.')",
        )
    return value


def _image_repository(value: str) -> str:
    if not IMAGE_REPOSITORY.fullmatch(value):
        raise PydanticCustomError(
            "image_repository",
            "must be an image repository without tag or digest, path in lower case, "
            "e.g. 'ghcr.io/org/app' (got {got})",
            {"got": _show(value)},
        )
    return value


def _hibernate_after(value: str) -> str:
    seconds = int(value[:-1]) * UNITS[value[-1]]
    if not MIN_HIBERNATE_AFTER <= seconds <= MAX_HIBERNATE_AFTER:
        raise PydanticCustomError(
            "hibernate_after", "must be between 5m and 7d (got {got})", {"got": _show(value)}
        )
    return value


# What editors are told a field takes, where it is more than its type says (a number for a string).
_CPU_INPUT = Annotated[str, StringConstraints(pattern=CPU_PATTERN)] | Annotated[int, Field(ge=0)]
_VERSION_INPUT = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)] | Annotated[int, Field(ge=0)]

Cpu = Annotated[
    StrictStr, BeforeValidator(_number_to_str, json_schema_input_type=_CPU_INPUT), _pattern(CPU_PATTERN)
]
Memory = Annotated[StrictStr, _pattern(MEMORY_PATTERN)]
Storage = Annotated[StrictStr, _pattern(STORAGE_PATTERN)]
Version = Annotated[
    StrictStr,
    BeforeValidator(_number_to_str, json_schema_input_type=_VERSION_INPUT),
    _pattern(VERSION_PATTERN),
]
HttpPath = Annotated[StrictStr, _pattern(PATH_PATTERN)]
EnvName = Annotated[str, _pattern(ENV_NAME_PATTERN)]
ObjectName = Annotated[StrictStr, AfterValidator(_dns_subdomain)]
AnnotationKey = Annotated[str, AfterValidator(_annotation_key)]
WritableDir = Annotated[StrictStr, _pattern(WRITABLE_DIR_PATTERN)]
SqlStatements = Annotated[
    tuple[StrictStr, ...],
    # One script or a list of statements; CloudNativePG takes a list.
    BeforeValidator(
        lambda value: [value] if isinstance(value, str) else value, json_schema_input_type=str | list[str]
    ),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- sections


class AppConfig(_Section):
    port: StrictInt = Field(default=3000, ge=1, le=65535, description="The port the app listens on.")
    health_path: HttpPath = Field(
        default="/health",
        alias="healthPath",
        description="The path the liveness, readiness and startup probes ask; it must answer 2xx.",
    )
    metrics_path: HttpPath | None = Field(
        default=None, alias="metricsPath", description="Where the app serves Prometheus metrics."
    )


class ImageConfig(_Section):
    repository: Annotated[StrictStr, AfterValidator(_image_repository)] | None = Field(
        default=None,
        description="The app's image repository, without tag or digest (`ghcr.io/acme/web`); it is tagged "
        "`pr-{number}`. Default: `{K8S_EE_IMAGE_REGISTRY}/{owner}/{repo}/{projectId}`.",
    )
    # For the CI that builds the image; the gateway does not read them.
    context: StrictStr | None = Field(
        default=None, description="For the CI that builds the image; not read here."
    )
    dockerfile: StrictStr | None = Field(
        default=None, description="For the CI that builds the image; not read here."
    )


def _within(resource: str, bound: str) -> Any:
    """A check that a quantity respects the namespace's LimitRange (SPEC 2).

    Checked here rather than left to the cluster: past these bounds the Deployment
    is accepted but its pods are refused, and the rollout only times out.
    """
    unit_of = quota.cpu_millicores if resource == "cpu" else quota.mebibytes
    limit = getattr(quota, f"CONTAINER_{bound.upper()}_{resource.upper()}")

    def check(value: str) -> str:
        if (bound == "min" and unit_of(value) < unit_of(limit)) or (
            bound == "max" and unit_of(value) > unit_of(limit)
        ):
            word = "at least" if bound == "min" else "at most"
            raise PydanticCustomError(
                "limit_range",
                "must be {word} {limit} per container, the namespace's LimitRange (got {got})",
                {"word": word, "limit": limit, "got": _show(value)},
            )
        return value

    return AfterValidator(check)


class ResourceRequests(_Section):
    cpu: Annotated[Cpu, _within("cpu", "min")] = Field(
        default="50m", description="CPU the app is guaranteed (`250m`, `1`); at least the LimitRange's 10m."
    )
    memory: Annotated[Memory, _within("memory", "min")] = Field(
        default="128Mi", description="Memory the app is guaranteed (`256Mi`); at least the LimitRange's 32Mi."
    )


class ResourceLimits(_Section):
    cpu: Annotated[Cpu, _within("cpu", "max")] = Field(
        default="200m", description="The most CPU the app may use; at most the LimitRange's 1 (CPU)."
    )
    memory: Annotated[Memory, _within("memory", "max")] = Field(
        default="384Mi", description="The most memory the app may use; at most the LimitRange's 1Gi."
    )


class ResourcesConfig(_Section):
    requests: ResourceRequests = Field(
        default=ResourceRequests(), description="What the app container requests."
    )
    limits: ResourceLimits = Field(
        default=ResourceLimits(), description="Its limits; each at least the matching request."
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourcesConfig:
        # Kubernetes refuses a request above its limit.
        for resource, unit_of in (("cpu", quota.cpu_millicores), ("memory", quota.mebibytes)):
            request = getattr(self.requests, resource)
            limit = getattr(self.limits, resource)
            if unit_of(request) > unit_of(limit):
                raise PydanticCustomError(
                    "request_over_limit",
                    "{path}: must not exceed limits.{resource} ({limit}) (got {got})",
                    {
                        "path": f"requests.{resource}",
                        "resource": resource,
                        "limit": limit,
                        "got": _show(request),
                    },
                )
        return self


class _Ref(_Section):
    name: ObjectName = Field(description="The name of the object in the environment's namespace.")


class EnvFromSource(_Section):
    secret_ref: _Ref | None = Field(
        default=None, alias="secretRef", description="A Secret whose keys become variables."
    )
    config_map_ref: _Ref | None = Field(
        default=None, alias="configMapRef", description="A ConfigMap whose keys become variables."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise PydanticCustomError(
                "env_from_one", "needs exactly one of secretRef.name or configMapRef.name"
            )
        return self


def _database_shape(value: Any) -> Any:
    # `postgresql: true` is short for `postgresql: {}`; `false` turns it off.
    if isinstance(value, bool):
        return {"enabled": value}
    if not isinstance(value, Mapping):
        raise PydanticCustomError(
            "database_shape", "must be true, false or a mapping (got {got})", {"got": _kind(value)}
        )
    return value


class _Database(_Section):
    enabled: StrictBool = Field(default=True, description="Whether the database is created.")
    version: Version | None = Field(
        default=None,
        description='The engine\'s version (an image tag); quote it (`"11.10"`). Default: postgresql 16, '
        "mongodb 7.0.14, redis 7.4, mariadb 11.4, minio the operator's.",
    )


def _claim_bounds(value: str) -> str:
    """A volume outside the LimitRange's claim bounds (SPEC 2) is refused by the cluster when the
    operator creates it, long after the apply: say so here."""
    size = quota.mebibytes(value)
    low, high = quota.mebibytes(quota.PVC_MIN_STORAGE), quota.mebibytes(quota.PVC_MAX_STORAGE)
    if not low <= size <= high:
        raise PydanticCustomError(
            "limit_range",
            "must be between {low} and {high}, the namespace's LimitRange for a volume (got {got})",
            {"low": quota.PVC_MIN_STORAGE, "high": quota.PVC_MAX_STORAGE, "got": _show(value)},
        )
    return value


class _DatabaseWithStorage(_Database):
    storage: Annotated[Storage, AfterValidator(_claim_bounds)] = Field(
        default=DEFAULT_STORAGE,
        description="Its volume's size (`1Gi`, `500Mi`), within the LimitRange's 100Mi to 5Gi.",
    )


class PostgresqlBootstrap(_Section):
    # Run as superuser in the `postgres` database once the cluster exists.
    init_sql: SqlStatements = Field(
        default=(),
        alias="initSQL",
        description="SQL run as superuser in the `postgres` database once, when the cluster is created "
        "(one script or a list of statements).",
    )
    # Run as superuser in the application database `app`.
    post_init_application_sql: SqlStatements = Field(
        default=(),
        alias="postInitApplicationSQL",
        description="SQL run as superuser in the application database `app` once, when it is created.",
    )


class PostgresqlConfig(_DatabaseWithStorage):
    bootstrap: PostgresqlBootstrap = Field(
        default=PostgresqlBootstrap(), description="SQL run when it is created."
    )


class MongodbConfig(_DatabaseWithStorage):
    pass


class RedisConfig(_Database):
    pass


class MinioConfig(_DatabaseWithStorage):
    pass


class MariadbConfig(_DatabaseWithStorage):
    pass


def _off(model: type[_Database], description: str) -> Any:
    return Field(
        default_factory=lambda: model.model_validate({"enabled": False}),
        description=f"{description} `true` turns it on with the defaults; off unless set.",
    )


def _shorthand(model: type[_Database]) -> BeforeValidator:
    # `postgresql: true` is short for `postgresql: {}`: editors are told both shapes.
    return BeforeValidator(_database_shape, json_schema_input_type=bool | model)


class DatabasesConfig(_Section):
    postgresql: Annotated[PostgresqlConfig, _shorthand(PostgresqlConfig)] = _off(
        PostgresqlConfig, "PostgreSQL, as a CloudNativePG Cluster."
    )
    mongodb: Annotated[MongodbConfig, _shorthand(MongodbConfig)] = _off(
        MongodbConfig, "MongoDB, as a one-member MongoDBCommunity replica set."
    )
    redis: Annotated[RedisConfig, _shorthand(RedisConfig)] = _off(
        RedisConfig, "Redis, as a Deployment (in memory: no storage)."
    )
    minio: Annotated[MinioConfig, _shorthand(MinioConfig)] = _off(
        MinioConfig, "S3 storage, as a MinIO Tenant with bucket `data`."
    )
    mariadb: Annotated[MariadbConfig, _shorthand(MariadbConfig)] = _off(
        MariadbConfig, "MariaDB, as a Deployment."
    )


class IngressConfig(_Section):
    enabled: StrictBool = Field(default=True, description="Whether the preview URL is served (an Ingress).")
    annotations: dict[AnnotationKey, StrictStr] = Field(
        default_factory=dict,
        description="Annotations added to the Ingress; the gateway's own (K8S_EE_INGRESS_ANNOTATIONS) win.",
    )


class MetricsConfig(_Section):
    enabled: StrictBool = Field(
        default=False, description="Whether a ServiceMonitor has Prometheus scrape `app.metricsPath`."
    )
    interval: Annotated[StrictStr, _pattern(INTERVAL_PATTERN)] = Field(
        default="30s", description="How often it is scraped (`30s`, `1m`)."
    )


class HibernationConfig(_Section):
    after: (
        Annotated[StrictStr, _pattern(HIBERNATE_AFTER_PATTERN), AfterValidator(_hibernate_after)] | None
    ) = Field(
        default=None,
        description="Idle time before the environment hibernates (`30m`, `8h`, `2d`; 5 minutes to "
        "7 days); the gateway's K8S_EE_HIBERNATE_AFTER when not set.",
    )

    @property
    def after_seconds(self) -> float | None:
        return None if self.after is None else float(int(self.after[:-1]) * UNITS[self.after[-1]])


class DatabaseConfig(BaseModel):
    """One enabled database, defaults filled in: what the renderer and the quota need."""

    model_config = ConfigDict(frozen=True)

    engine: Engine
    # None only for MinIO without a version: the operator's own image.
    version: str | None
    # None for Redis, which keeps its data in memory.
    storage: str | None
    init_sql: tuple[str, ...] = ()
    post_init_application_sql: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.engine.value


class RepoConfig(_Section):
    project_id: Annotated[StrictStr, _pattern(PROJECT_ID_PATTERN)] = Field(
        alias="projectId",
        description="The project's short name: lower-case letters, digits and `-`, at most 20; the "
        "namespace is `{projectId}-pr-{number}`. Required.",
    )
    trigger: Trigger = Field(
        default=Trigger.AUTOMATIC,
        description="`automatic`: every pull request gets an environment; `on-demand`: only when asked "
        "(`/deploy-preview`, or the generic trigger's deploy).",
    )
    app: AppConfig = Field(default=AppConfig(), description="The app.")
    image: ImageConfig = Field(default=ImageConfig(), description="Where the app's image is.")
    resources: ResourcesConfig = Field(
        default=ResourcesConfig(), description="The app container's CPU and memory."
    )
    env: dict[EnvName, StrictStr] = Field(
        default_factory=dict,
        description="Variables for the app (strings: quote numbers and booleans).",
        json_schema_extra={"additionalProperties": False},
    )
    env_from: tuple[EnvFromSource, ...] = Field(
        default=(),
        alias="envFrom",
        description="Secrets and ConfigMaps whose keys become the app's variables.",
    )
    writable_dirs: tuple[WritableDir, ...] = Field(
        default=(),
        alias="writableDirs",
        description="Absolute paths the app may write (each an emptyDir; the root filesystem is read-only).",
    )
    databases: DatabasesConfig = Field(
        default=DatabasesConfig(),
        description="Databases created with the environment; the app gets their connection variables.",
    )
    ingress: IngressConfig = Field(default=IngressConfig(), description="The preview URL.")
    metrics: MetricsConfig = Field(default=MetricsConfig(), description="Prometheus scraping.")
    hibernation: HibernationConfig = Field(
        default=HibernationConfig(), description="When the environment sleeps for want of activity."
    )

    def enabled_databases(self) -> list[DatabaseConfig]:
        """The enabled databases in the fixed order postgresql, mongodb, redis, minio, mariadb."""
        enabled: list[DatabaseConfig] = []
        for engine in ENGINE_ORDER:
            section: _Database = getattr(self.databases, engine.value)
            if not section.enabled:
                continue
            storage = section.storage if isinstance(section, _DatabaseWithStorage) else None
            bootstrap = section.bootstrap if isinstance(section, PostgresqlConfig) else PostgresqlBootstrap()
            enabled.append(
                DatabaseConfig(
                    engine=engine,
                    version=section.version or DEFAULT_VERSIONS[engine],
                    storage=storage,
                    init_sql=bootstrap.init_sql,
                    post_init_application_sql=bootstrap.post_init_application_sql,
                )
            )
        return enabled

    def database(self, engine: Engine | str) -> DatabaseConfig | None:
        wanted = Engine(engine)
        return next((db for db in self.enabled_databases() if db.engine is wanted), None)

    def database_names(self) -> list[str]:
        return [db.name for db in self.enabled_databases()]


# ---------------------------------------------------------------- errors


class Problem(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Dotted path of the field; "" for the file as a whole.
    path: str
    message: str

    def __str__(self) -> str:
        return f"{FILE_NAME}: {self.path}: {self.message}" if self.path else f"{FILE_NAME}: {self.message}"


class ConfigError(Exception):
    """`k8s-ee.yaml` is missing, not YAML, or breaks a rule; `problems` says what and where."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def check_live_storage(config: RepoConfig, live: Mapping[Engine, tuple[str, int]]) -> None:
    """Refuse a storage smaller than a volume the environment already has: a volume cannot
    shrink (the API answers 422, CloudNativePG refuses too), so the deploy would fail for good.

    `live` is, per engine, the largest live volume's name and size in MiB."""
    problems = []
    for db in config.enabled_databases():
        if db.storage is None or db.engine not in live:
            continue
        name, size = live[db.engine]
        if quota.mebibytes(db.storage) < size:
            problems.append(
                Problem(
                    path=f"databases.{db.name}.storage",
                    message=f"must be at least {quota.show_mebibytes(size)}, the size of the live volume "
                    f"{name} (a volume cannot shrink; delete the environment to start smaller) "
                    f"(got {_show(db.storage)})",
                )
            )
    if problems:
        raise ConfigError(problems)


def load_config(text: str) -> RepoConfig:
    """Parse and validate the text of `k8s-ee.yaml`."""
    # Imported here: the web process checks inline configs (config_from_mapping) and never
    # parses YAML, so it does not carry the parser.
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(path="", message=_yaml_message(exc))]) from None
    if data is None:
        raise ConfigError([Problem(path="", message="is empty; at least projectId is required")])
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem(path="", message=f"must be a mapping at the top level (got {_kind(data)})")]
        )
    return config_from_mapping(data)


def config_from_mapping(data: Mapping[str, Any]) -> RepoConfig:
    """Validate an already-parsed `k8s-ee.yaml` (the generic trigger may send it inline as JSON)."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem(path="", message=f"must be a mapping at the top level (got {_kind(data)})")]
        )
    try:
        return RepoConfig.model_validate(_string_keys(data))
    except ValidationError as exc:
        raise ConfigError([_problem(error) for error in exc.errors()]) from None


def _string_keys(value: Any) -> Any:
    """YAML allows `1: x` or `true: x`; keys are names here, so read them as YAML wrote them."""
    if isinstance(value, Mapping):
        return {key_text(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


def key_text(key: Any) -> str:
    """A YAML key as the path names it."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "could not be parsed"
    if mark is not None:
        return f"is not valid YAML: {problem} at line {mark.line + 1}, column {mark.column + 1}"
    return f"is not valid YAML: {problem}"


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's location of a field as the dotted path messages show (`envFrom[0].secretRef`)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            text = str(part)
            if not _PLAIN_KEY.fullmatch(text):
                text = json.dumps(text)
            path = f"{path}.{text}" if path else text
    return path


def _problem(error: Mapping[str, Any]) -> Problem:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "request_over_limit":
        # Raised on `resources` but about one of its fields.
        path, _, message = error["msg"].partition(": ")
        return Problem(path=field_path((*loc, *path.split("."))), message=message)
    return Problem(path=field_path(loc), message=_message(kind, loc, ctx, value, error["msg"]))


def _message(kind: str, loc: tuple[int | str, ...], ctx: Mapping[str, Any], value: Any, default: str) -> str:
    if loc and loc[-1] == "[key]":
        if kind == "string_pattern_mismatch":
            return f"is not a valid variable name: must match {ctx['pattern']}"
        return default
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']} (got {_show(value)})"
    if kind == "string_type":
        hint = "; quote it in YAML" if isinstance(value, int | float | bool) else ""
        return f"must be a string (got {_kind(value)}){hint}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number (got {_kind(value)})"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false (got {_kind(value)})"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']} (got {_kind(value)})"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']} (got {_kind(value)})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping (got {_kind(value)})"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (got {_kind(value)})"
    if kind == "enum":
        return f"must be one of {ctx['expected']} (got {_show(value)})"
    return default


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1])
    if not allowed:
        return "unknown key"
    message = f"unknown key; allowed: {', '.join(allowed)}"
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"{message} (did you mean {close[0]!r}?)" if close else message


def _allowed_keys(parent: tuple[int | str, ...]) -> list[str]:
    """The keys the section at `parent` accepts, as written in YAML."""
    model: Any = RepoConfig
    for part in parent:
        if isinstance(part, int):
            model = _element_type(model, sequence=True)
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = next(
            (f for name, f in model.model_fields.items() if (f.alias or name) == part),
            None,
        )
        if field is None:
            return []
        model = _element_type(field.annotation, sequence=False)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [field.alias or name for name, field in model.model_fields.items()]
    return []


def _element_type(annotation: Any, *, sequence: bool) -> Any:
    """Strip Optional/Annotated; for a list or tuple, when indexing into it, its element type."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        elif sequence and origin in (list, tuple):
            annotation = get_args(annotation)[0]
            sequence = False
        else:
            return annotation
