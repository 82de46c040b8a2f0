"""The databases a repository asks for (SPEC 2), each named `app-<engine>`.

For every engine: the objects that run it, where it listens (for the app's
wait-for-<db> init container) and the environment variables that connect the app
to it. PostgreSQL, MongoDB and MinIO are run by their operators (CloudNativePG,
MongoDB Community, MinIO); Redis and MariaDB are plain Deployments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.config import DatabaseConfig, Engine
from handlers.render import pods
from handlers.render.context import Context, Manifest, selector
from handlers.render.credentials import secret_name

DATABASE = "app"
USER = "app"
BUCKET = "data"

POSTGRESQL_IMAGE = "ghcr.io/cloudnative-pg/postgresql"
# The Secret CloudNativePG creates for the owner of the application database.
POSTGRESQL_APP_SECRET = "app-postgresql-app"
MINIO_IMAGE = "quay.io/minio/minio"
# The MongoDB Community operator runs the database pods under this service account
# and expects it in the database's namespace.
MONGODB_SERVICE_ACCOUNT = "mongodb-database"
# Auth database of the SCRAM user; the operator names the connection-string
# Secret `<resource>-<auth db>-<user>`.
MONGODB_AUTH_DB = "admin"
MONGODB_CONNECTION_SECRET = f"app-mongodb-{MONGODB_AUTH_DB}-{USER}"
MONGODB_LOGS_STORAGE = "1Gi"


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


ENDPOINTS: dict[Engine, Endpoint] = {
    # CloudNativePG's read-write service, always on the primary.
    Engine.POSTGRESQL: Endpoint("app-postgresql-rw", 5432),
    # The operator's headless service for the replica set.
    Engine.MONGODB: Endpoint("app-mongodb-svc", 27017),
    Engine.REDIS: Endpoint("app-redis", 6379),
    # The operator's headless service; with requestAutoCert off the S3 API is plain HTTP.
    Engine.MINIO: Endpoint("app-minio-hl", 9000),
    Engine.MARIADB: Endpoint("app-mariadb", 3306),
}


def resource_name(engine: Engine) -> str:
    return f"app-{engine.value}"


def volume_engine(name: str, labels: dict[str, str]) -> Engine | None:
    """Whose data a live claim holds, by the names the operators give the claims of what we render:
    CloudNativePG `app-postgresql-<n>` (labelled `cnpg.io/cluster`), the MongoDB StatefulSet's
    `data-volume-app-mongodb-<n>` (its logs volume has a fixed size), MinIO's
    `data<i>-app-minio-pool-0-<n>`, and our own `app-mariadb-data`."""
    if labels.get("cnpg.io/cluster") == resource_name(Engine.POSTGRESQL):
        return Engine.POSTGRESQL
    if name.startswith(f"data-volume-{resource_name(Engine.MONGODB)}-"):
        return Engine.MONGODB
    if name.startswith("data") and f"-{resource_name(Engine.MINIO)}-pool-" in name:
        return Engine.MINIO
    if name == f"{resource_name(Engine.MARIADB)}-data":
        return Engine.MARIADB
    return None


def live_storage(claims: list[tuple[str, dict[str, str], int]]) -> dict[Engine, tuple[str, int]]:
    """Per engine, its largest live claim: (name, size in MiB), from (name, labels, size) triples."""
    found: dict[Engine, tuple[str, int]] = {}
    for name, labels, size in claims:
        engine = volume_engine(name, labels)
        if engine is not None and size > found.get(engine, ("", -1))[1]:
            found[engine] = (name, size)
    return found


def database_objects(ctx: Context, db: DatabaseConfig) -> list[Manifest]:
    builders = {
        Engine.POSTGRESQL: _postgresql,
        Engine.MONGODB: _mongodb,
        Engine.REDIS: _redis,
        Engine.MINIO: _minio,
        Engine.MARIADB: _mariadb,
    }
    return builders[db.engine](ctx, db)


def database_env(db: DatabaseConfig) -> list[dict[str, Any]]:
    """The app's connection variables for `db`; the passwords only by reference."""
    endpoint = ENDPOINTS[db.engine]
    if db.engine is Engine.POSTGRESQL:
        return [
            _from_secret(name, POSTGRESQL_APP_SECRET, key)
            for name, key in (
                ("DATABASE_URL", "uri"),
                ("PGHOST", "host"),
                ("PGPORT", "port"),
                ("PGDATABASE", "dbname"),
                ("PGUSER", "user"),
                ("PGPASSWORD", "password"),
            )
        ]
    if db.engine is Engine.MONGODB:
        return [
            _from_secret("MONGODB_URI", MONGODB_CONNECTION_SECRET, "connectionString.standard"),
            _value("MONGODB_DATABASE", DATABASE),
        ]
    if db.engine is Engine.REDIS:
        return [
            _value("REDIS_HOST", endpoint.host),
            _value("REDIS_PORT", str(endpoint.port)),
            _from_secret("REDIS_PASSWORD", secret_name(Engine.REDIS), "password"),
            # Kubernetes expands $(REDIS_PASSWORD) from the variable above.
            _value("REDIS_URL", f"redis://:$(REDIS_PASSWORD)@{endpoint.host}:{endpoint.port}/0"),
        ]
    if db.engine is Engine.MINIO:
        url = f"http://{endpoint.host}:{endpoint.port}"
        env: list[dict[str, Any]] = []
        for prefix in ("S3", "MINIO"):
            env += [
                _value(f"{prefix}_ENDPOINT", url),
                _value(f"{prefix}_BUCKET", BUCKET),
                _from_secret(f"{prefix}_ACCESS_KEY", secret_name(Engine.MINIO), "accesskey"),
                _from_secret(f"{prefix}_SECRET_KEY", secret_name(Engine.MINIO), "secretkey"),
            ]
        return env
    return [
        _value("MYSQL_HOST", endpoint.host),
        _value("MYSQL_PORT", str(endpoint.port)),
        _value("MYSQL_DATABASE", DATABASE),
        _value("MYSQL_USER", USER),
        _from_secret("MYSQL_PASSWORD", secret_name(Engine.MARIADB), "password"),
        _value("MYSQL_URL", f"mysql://{USER}:$(MYSQL_PASSWORD)@{endpoint.host}:{endpoint.port}/{DATABASE}"),
    ]


def _value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _labels(engine: Engine) -> dict[str, str]:
    return {**selector(engine.value, resource_name(engine)), "app.kubernetes.io/component": "database"}


def _claim_spec(storage: str) -> dict[str, Any]:
    return {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}


def _storage(db: DatabaseConfig) -> str:
    if db.storage is None:
        raise ValueError(f"{db.engine.value} has no storage size")
    return db.storage


# ---------------------------------------------------------------- PostgreSQL


def _postgresql(ctx: Context, db: DatabaseConfig) -> list[Manifest]:
    initdb: dict[str, Any] = {"database": DATABASE, "owner": USER}
    if db.init_sql:
        # `bootstrap.initSQL` runs in the `postgres` database, as the first edition did.
        initdb["postInitSQL"] = list(db.init_sql)
    if db.post_init_application_sql:
        initdb["postInitApplicationSQL"] = list(db.post_init_application_sql)
    return [
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": ctx.metadata(resource_name(Engine.POSTGRESQL), labels=_labels(Engine.POSTGRESQL)),
            "spec": {
                "instances": 1,
                "imageName": f"{POSTGRESQL_IMAGE}:{db.version}",
                "primaryUpdateStrategy": "unsupervised",
                "enableSuperuserAccess": False,
                # A PodDisruptionBudget on a single instance would block node drains.
                "enablePDB": False,
                "storage": {"size": _storage(db)},
                "resources": pods.resources(("250m", "256Mi"), ("500m", "512Mi")),
                "postgresql": {
                    # Sized for the 512Mi limit.
                    "parameters": {
                        "shared_buffers": "128MB",
                        "effective_cache_size": "256MB",
                        "work_mem": "4MB",
                        "maintenance_work_mem": "64MB",
                        "max_connections": "50",
                    }
                },
                "bootstrap": {"initdb": initdb},
            },
        }
    ]


# ---------------------------------------------------------------- MongoDB


def _mongodb(ctx: Context, db: DatabaseConfig) -> list[Manifest]:
    name = resource_name(Engine.MONGODB)
    labels = _labels(Engine.MONGODB)
    small = pods.resources(("10m", "32Mi"), ("100m", "64Mi"))
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": ctx.metadata(MONGODB_SERVICE_ACCOUNT, labels=labels),
        },
        {
            # Binds the installation's ClusterRole for the agent (secrets get; pods get, patch,
            # delete), in this namespace only: see RenderSettings.mongodb_cluster_role.
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": ctx.metadata(MONGODB_SERVICE_ACCOUNT, labels=labels),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": ctx.settings.mongodb_cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": MONGODB_SERVICE_ACCOUNT}],
        },
        {
            "apiVersion": "mongodbcommunity.mongodb.com/v1",
            "kind": "MongoDBCommunity",
            "metadata": ctx.metadata(name, labels=labels),
            "spec": {
                "members": 1,
                "type": "ReplicaSet",
                "version": db.version,
                "security": {"authentication": {"modes": ["SCRAM"]}},
                "users": [
                    {
                        "name": USER,
                        "db": MONGODB_AUTH_DB,
                        "passwordSecretRef": {"name": secret_name(Engine.MONGODB), "key": "password"},
                        "roles": [{"name": "readWrite", "db": DATABASE}, {"name": "dbAdmin", "db": DATABASE}],
                        "scramCredentialsSecretName": f"{name}-{USER}",
                        # The operator's default name, spelt out.
                        "connectionStringSecretName": MONGODB_CONNECTION_SECRET,
                    }
                ],
                # WiredTiger would size its cache from the node's memory, not the pod's limit.
                "additionalMongodConfig": {"storage.wiredTiger.engineConfig.cacheSizeGB": 0.25},
                # Merged by the operator into the StatefulSet it builds, container by name.
                "statefulSet": {
                    "spec": {
                        "volumeClaimTemplates": [
                            {"metadata": {"name": "data-volume"}, "spec": _claim_spec(_storage(db))},
                            {"metadata": {"name": "logs-volume"}, "spec": _claim_spec(MONGODB_LOGS_STORAGE)},
                        ],
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "mongod",
                                        "resources": pods.resources(("100m", "256Mi"), ("500m", "512Mi")),
                                    },
                                    {
                                        "name": "mongodb-agent",
                                        "resources": pods.resources(("50m", "64Mi"), ("100m", "128Mi")),
                                    },
                                ],
                                # The operator's defaults (500m/400M requests) would not fit the quota.
                                "initContainers": [
                                    {"name": "mongod-posthook", "resources": small},
                                    {"name": "mongodb-agent-readinessprobe", "resources": small},
                                ],
                            }
                        },
                    }
                },
            },
        },
    ]


# ---------------------------------------------------------------- Redis


def _redis(ctx: Context, db: DatabaseConfig) -> list[Manifest]:
    name = resource_name(Engine.REDIS)
    labels = _labels(Engine.REDIS)
    container = {
        "name": "redis",
        "image": f"redis:{db.version}-alpine",
        "imagePullPolicy": "IfNotPresent",
        "command": ["redis-server"],
        "args": [
            "--requirepass",
            "$(REDIS_PASSWORD)",
            "--maxmemory",
            "100mb",
            "--maxmemory-policy",
            "allkeys-lru",
        ],
        "env": [_from_secret("REDIS_PASSWORD", secret_name(Engine.REDIS), "password")],
        "ports": [{"name": "redis", "containerPort": ENDPOINTS[Engine.REDIS].port, "protocol": "TCP"}],
        "resources": pods.resources(("100m", "64Mi"), ("200m", "128Mi")),
        "securityContext": pods.container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "livenessProbe": pods.tcp_probe("redis", period=10, initial_delay=5),
        "readinessProbe": pods.tcp_probe("redis", period=5),
    }
    # The alpine image's redis user is 999, its group 1000.
    pod = _plain_pod(labels, container, pods.pod_security(999, 1000, 1000), [pods.empty_dir("data")])
    return [
        _deployment(ctx, name, labels, pod),
        _service(ctx, name, labels, "redis", ENDPOINTS[Engine.REDIS].port),
    ]


# ---------------------------------------------------------------- MinIO


def _minio(ctx: Context, db: DatabaseConfig) -> list[Manifest]:
    spec: dict[str, Any] = {
        # The Secret with config.env (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD).
        "configuration": {"name": secret_name(Engine.MINIO)},
        "pools": [
            {
                "name": "pool-0",
                "servers": 1,
                "volumesPerServer": 1,
                "volumeClaimTemplate": {"metadata": {"name": "data"}, "spec": _claim_spec(_storage(db))},
                "resources": pods.resources(("100m", "256Mi"), ("500m", "512Mi")),
                "securityContext": pods.pod_security(1000, 1000, 1000),
                "containerSecurityContext": pods.container_security(read_only_root=False),
            }
        ],
        "requestAutoCert": False,
        "buckets": [{"name": BUCKET}],
    }
    if db.version:
        spec["image"] = f"{MINIO_IMAGE}:{db.version}"
    return [
        {
            "apiVersion": "minio.min.io/v2",
            "kind": "Tenant",
            "metadata": ctx.metadata(resource_name(Engine.MINIO), labels=_labels(Engine.MINIO)),
            "spec": spec,
        }
    ]


# ---------------------------------------------------------------- MariaDB


def _mariadb(ctx: Context, db: DatabaseConfig) -> list[Manifest]:
    name = resource_name(Engine.MARIADB)
    labels = _labels(Engine.MARIADB)
    secret = secret_name(Engine.MARIADB)
    claim = f"{name}-data"
    container = {
        "name": "mariadb",
        "image": f"mariadb:{db.version}",
        "imagePullPolicy": "IfNotPresent",
        "args": ["--max-connections=50", "--innodb-buffer-pool-size=64M"],
        "env": [
            _from_secret("MARIADB_ROOT_PASSWORD", secret, "root-password"),
            _value("MARIADB_DATABASE", DATABASE),
            _value("MARIADB_USER", USER),
            _from_secret("MARIADB_PASSWORD", secret, "password"),
        ],
        "ports": [{"name": "mysql", "containerPort": ENDPOINTS[Engine.MARIADB].port, "protocol": "TCP"}],
        "resources": pods.resources(("150m", "128Mi"), ("300m", "256Mi")),
        # The official image's entrypoint writes outside its data, socket and tmp
        # directories on first start, so its root filesystem stays writable.
        "securityContext": pods.container_security(read_only_root=False),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/mysql"},
            {"name": "tmp", "mountPath": pods.TMP_DIR},
            {"name": "run", "mountPath": "/run/mysqld"},
        ],
        "startupProbe": pods.tcp_probe("mysql", period=2, failures=90),
        "livenessProbe": pods.tcp_probe("mysql", period=10),
        "readinessProbe": pods.tcp_probe("mysql", period=5),
    }
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": claim}},
        pods.empty_dir("tmp"),
        pods.empty_dir("run"),
    ]
    # The image's mysql user and group are 999.
    pod = _plain_pod(labels, container, pods.pod_security(999, 999, 999), volumes)
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": ctx.metadata(claim, labels=labels),
            "spec": _claim_spec(_storage(db)),
        },
        _deployment(ctx, name, labels, pod),
        _service(ctx, name, labels, "mysql", ENDPOINTS[Engine.MARIADB].port),
    ]


# ---------------------------------------------------------------- plain workloads


def _plain_pod(
    labels: dict[str, str],
    container: dict[str, Any],
    security: dict[str, Any],
    volumes: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": security,
            "containers": [container],
            "volumes": volumes,
        },
    }


def _deployment(ctx: Context, name: str, labels: dict[str, str], pod: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": ctx.metadata(name, labels=labels),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": selector(labels["app.kubernetes.io/name"], name)},
            # One pod at a time: the data volume is ReadWriteOnce, and the quota has no room for two.
            "strategy": {"type": "Recreate"},
            "template": {**pod, "metadata": {"labels": ctx.labels(pod["metadata"]["labels"])}},
        },
    }


def _service(ctx: Context, name: str, labels: dict[str, str], port_name: str, port: int) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ctx.metadata(name, labels=labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(labels["app.kubernetes.io/name"], name),
            "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
        },
    }
