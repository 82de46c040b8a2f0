"""k8s-ee.yaml (SPEC 3): every rule, valid and invalid, and how problems are reported."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from handlers.config import (
    ConfigError,
    Engine,
    Problem,
    RepoConfig,
    Trigger,
    config_from_mapping,
    load_config,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "configs"


def problems_of(data: object) -> dict[str, str]:
    """Validate `data` (a mapping or YAML text), expecting failure: path -> message."""
    with pytest.raises(ConfigError) as caught:
        if isinstance(data, str):
            load_config(data)
        else:
            config_from_mapping(data)  # type: ignore[arg-type]
    found = {problem.path: problem.message for problem in caught.value.problems}
    assert len(found) == len(caught.value.problems), "one problem per path"
    return found


def valid(**fields: object) -> RepoConfig:
    return config_from_mapping({"projectId": "myapp", **fields})


def invalid(**fields: object) -> dict[str, str]:
    return problems_of({"projectId": "myapp", **fields})


# ---------------------------------------------------------------- fixtures


def test_minimal_file_takes_every_default() -> None:
    config = load_config((FIXTURES / "minimal.yaml").read_text())
    assert config.project_id == "myapp"
    assert config.trigger is Trigger.AUTOMATIC
    assert (config.app.port, config.app.health_path, config.app.metrics_path) == (3000, "/health", None)
    assert config.image.repository is None
    assert config.resources.requests.cpu == "50m"
    assert config.resources.requests.memory == "128Mi"
    assert config.resources.limits.cpu == "200m"
    assert config.resources.limits.memory == "384Mi"
    assert config.env == {}
    assert config.env_from == ()
    assert config.writable_dirs == ()
    assert config.enabled_databases() == []
    assert config.ingress.enabled is True
    assert config.ingress.annotations == {}
    assert config.metrics.enabled is False
    assert config.metrics.interval == "30s"


def test_full_file() -> None:
    config = load_config((FIXTURES / "full.yaml").read_text())
    assert config.trigger is Trigger.ON_DEMAND
    assert config.app.port == 8080
    assert config.app.metrics_path == "/internal/metrics"
    assert config.image.repository == "registry.example.com:5000/team/shop"
    assert config.image.dockerfile == "docker/Dockerfile"
    # `cpu: 1` in YAML is an integer; it is taken as written.
    assert config.resources.limits.cpu == "1"
    assert config.env == {"NODE_ENV": "production", "LOG_LEVEL": "debug", "_PRIVATE": "1"}
    assert [s.secret_ref.name for s in config.env_from if s.secret_ref] == ["shop-api-keys"]
    assert [s.config_map_ref.name for s in config.env_from if s.config_map_ref] == ["shop-settings"]
    assert config.writable_dirs == ("/app/.cache", "/var/run/shop")
    assert config.database_names() == ["postgresql", "mongodb", "redis", "minio", "mariadb"]
    postgresql = config.database("postgresql")
    assert postgresql is not None
    assert (postgresql.version, postgresql.storage) == ("17", "2Gi")
    assert postgresql.init_sql == ("CREATE EXTENSION IF NOT EXISTS pg_stat_statements",)
    assert len(postgresql.post_init_application_sql) == 2
    assert config.ingress.annotations == {
        "traefik.ingress.kubernetes.io/router.middlewares": "default-compress@kubernetescrd"
    }
    assert (config.metrics.enabled, config.metrics.interval) == (True, "1m")


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "invalid-storage.yaml",
            {"databases.postgresql.storage": "must match ^[0-9]+(Mi|Gi|Ti)$ (got '1GB')"},
        ),
        (
            "invalid-unknown-keys.yaml",
            {
                "app.prot": "unknown key; allowed: port, healthPath, metricsPath (did you mean 'port'?)",
                "databases.redis.storage": "unknown key; allowed: enabled, version",
                "databases.postgres": (
                    "unknown key; allowed: postgresql, mongodb, redis, minio, mariadb (did you mean 'postgresql'?)"
                ),
                "replicas": (
                    "unknown key; allowed: projectId, trigger, app, image, resources, env, envFrom, "
                    "writableDirs, databases, ingress, metrics"
                ),
            },
        ),
        (
            "invalid-env.yaml",
            {
                "env.1BAD": "is not a valid variable name: must match ^[A-Za-z_][A-Za-z0-9_]*$",
                "env.GOOD": "must be a string (got 42); quote it in YAML",
                "envFrom[0]": "needs exactly one of secretRef.name or configMapRef.name",
                "envFrom[1]": "needs exactly one of secretRef.name or configMapRef.name",
            },
        ),
        ("invalid-not-mapping.yaml", {"": "must be a mapping at the top level (got a list)"}),
    ],
)
def test_invalid_fixtures(fixture: str, expected: dict[str, str]) -> None:
    assert problems_of((FIXTURES / fixture).read_text()) == expected


def test_yaml_syntax_error_says_where() -> None:
    found = problems_of((FIXTURES / "invalid-syntax.yaml").read_text())
    assert list(found) == [""]
    assert found[""].startswith("is not valid YAML: ")
    assert "line 4" in found[""]


# ---------------------------------------------------------------- reporting


def test_error_text_reads_well_in_a_comment() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("projectId: myapp\ndatabases:\n  postgresql:\n    storage: 1GB\n")
    assert str(caught.value) == (
        "k8s-ee.yaml: databases.postgresql.storage: must match ^[0-9]+(Mi|Gi|Ti)$ (got '1GB')"
    )


def test_every_problem_is_reported_at_once_one_line_each() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("projectId: My_App\napp: {port: 0}\nmetrics: {interval: 1d}\n")
    lines = str(caught.value).splitlines()
    assert lines == [
        "k8s-ee.yaml: projectId: must match ^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$ (got 'My_App')",
        "k8s-ee.yaml: app.port: must be at least 1 (got 0)",
        "k8s-ee.yaml: metrics.interval: must match ^[0-9]+(s|m|h)$ (got '1d')",
    ]
    assert isinstance(caught.value, Exception)


def test_problem_without_path_names_only_the_file() -> None:
    assert str(Problem(path="", message="is empty")) == "k8s-ee.yaml: is empty"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty; at least projectId is required"),
        ("# only a comment\n", "is empty; at least projectId is required"),
        ("just a string", "must be a mapping at the top level (got 'just a string')"),
        ("42", "must be a mapping at the top level (got 42)"),
    ],
)
def test_file_that_is_not_a_mapping(text: str, message: str) -> None:
    assert problems_of(text) == {"": message}


def test_mapping_entry_point_refuses_non_mappings() -> None:
    assert problems_of(["projectId"]) == {"": "must be a mapping at the top level (got a list)"}


def test_long_values_are_cut_in_messages() -> None:
    found = invalid(app={"healthPath": "x" * 200})
    assert found["app.healthPath"] == f"must match ^/ (got '{'x' * 57}...')"


def test_config_is_immutable() -> None:
    config = valid()
    with pytest.raises(pydantic.ValidationError):
        config.project_id = "other"  # type: ignore[misc]


def test_snake_case_names_are_not_yaml_keys() -> None:
    assert problems_of({"project_id": "myapp"}) == {
        "projectId": "is required",
        "project_id": (
            "unknown key; allowed: projectId, trigger, app, image, resources, env, envFrom, "
            "writableDirs, databases, ingress, metrics (did you mean 'projectId'?)"
        ),
    }


# ---------------------------------------------------------------- projectId


@pytest.mark.parametrize("project_id", ["a", "7", "my-app", "a1-b2-c3", "x" * 20, "a-b"])
def test_project_id_valid(project_id: str) -> None:
    assert config_from_mapping({"projectId": project_id}).project_id == project_id


@pytest.mark.parametrize("project_id", ["MyApp", "-app", "app-", "my_app", "x" * 21, "", "my.app", "app "])
def test_project_id_invalid(project_id: str) -> None:
    found = problems_of({"projectId": project_id})
    assert found["projectId"].startswith("must match ^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$ (got ")


def test_project_id_required_and_a_string() -> None:
    assert problems_of({}) == {"projectId": "is required"}
    assert problems_of({"projectId": 123}) == {"projectId": "must be a string (got 123); quote it in YAML"}


# ---------------------------------------------------------------- trigger


@pytest.mark.parametrize(
    ("value", "expected"), [("automatic", Trigger.AUTOMATIC), ("on-demand", Trigger.ON_DEMAND)]
)
def test_trigger_valid(value: str, expected: Trigger) -> None:
    assert valid(trigger=value).trigger is expected


def test_trigger_invalid() -> None:
    assert invalid(trigger="manual") == {
        "trigger": "must be one of 'automatic' or 'on-demand' (got 'manual')"
    }
    # YAML 1.1 reads a bare `on` as true.
    assert problems_of("projectId: myapp\ntrigger: on\n") == {
        "trigger": "must be one of 'automatic' or 'on-demand' (got true)"
    }


# ---------------------------------------------------------------- app


@pytest.mark.parametrize("port", [1, 80, 3000, 65535])
def test_app_port_valid(port: int) -> None:
    assert valid(app={"port": port}).app.port == port


@pytest.mark.parametrize(
    ("port", "message"),
    [
        (0, "must be at least 1 (got 0)"),
        (65536, "must be at most 65535 (got 65536)"),
        ("3000", "must be a whole number (got '3000')"),
        (True, "must be a whole number (got true)"),
        (80.5, "must be a whole number (got 80.5)"),
    ],
)
def test_app_port_invalid(port: object, message: str) -> None:
    assert invalid(app={"port": port}) == {"app.port": message}


def test_health_and_metrics_paths() -> None:
    config = valid(app={"healthPath": "/ready", "metricsPath": "/m"})
    assert (config.app.health_path, config.app.metrics_path) == ("/ready", "/m")
    assert invalid(app={"healthPath": "health", "metricsPath": "metrics"}) == {
        "app.healthPath": "must match ^/ (got 'health')",
        "app.metricsPath": "must match ^/ (got 'metrics')",
    }


def test_app_must_be_a_mapping() -> None:
    assert invalid(app=[1]) == {"app": "must be a mapping (got a list)"}


# ---------------------------------------------------------------- image


@pytest.mark.parametrize(
    "repository",
    [
        "myapp",
        "ghcr.io/org/app",
        "registry.example.com:5000/team/sub/app",
        "docker.io/library/nginx",
        "a/b_c.d-e",
    ],
)
def test_image_repository_valid(repository: str) -> None:
    assert valid(image={"repository": repository}).image.repository == repository


@pytest.mark.parametrize(
    "repository", ["ghcr.io/Org/App", "app:latest", "app@sha256:" + "a" * 64, "/app", "app/", "with space"]
)
def test_image_repository_invalid(repository: str) -> None:
    found = invalid(image={"repository": repository})
    assert found["image.repository"].startswith("must be an image repository without tag or digest")


def test_image_build_fields_are_accepted() -> None:
    config = valid(image={"context": "./web", "dockerfile": "Dockerfile.prod"})
    assert (config.image.context, config.image.dockerfile) == ("./web", "Dockerfile.prod")
    assert invalid(image={"tag": "x"})["image.tag"].startswith(
        "unknown key; allowed: repository, context, dockerfile"
    )


# ---------------------------------------------------------------- resources


@pytest.mark.parametrize("cpu", ["10m", "50m", "200m", "1", 1, "1000m"])
def test_cpu_valid(cpu: object) -> None:
    config = valid(resources={"requests": {"cpu": "10m"}, "limits": {"cpu": cpu}})
    assert config.resources.limits.cpu == str(cpu)


@pytest.mark.parametrize("cpu", ["0.5", "500M", "m", "1.5", "-1", "100 m", "1k"])
def test_cpu_pattern(cpu: str) -> None:
    assert invalid(resources={"limits": {"cpu": cpu}}) == {
        "resources.limits.cpu": f"must match ^[0-9]+(m|[0-9]*)?$ (got {cpu!r})"
    }


@pytest.mark.parametrize("memory", ["128M", "1Ti", "512", "1gi", "0.5Gi", "128Ki"])
def test_memory_pattern(memory: str) -> None:
    assert invalid(resources={"requests": {"memory": memory}}) == {
        "resources.requests.memory": f"must match ^[0-9]+(Mi|Gi)$ (got {memory!r})"
    }


def test_memory_valid() -> None:
    config = valid(resources={"requests": {"memory": "64Mi"}, "limits": {"memory": "1Gi"}})
    assert (config.resources.requests.memory, config.resources.limits.memory) == ("64Mi", "1Gi")


def test_request_above_limit() -> None:
    assert invalid(resources={"requests": {"cpu": "300m"}}) == {
        "resources.requests.cpu": "must not exceed limits.cpu (200m) (got '300m')"
    }
    assert invalid(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}) == {
        "resources.requests.memory": "must not exceed limits.memory (512Mi) (got '1Gi')"
    }


def test_values_outside_the_limit_range() -> None:
    assert invalid(
        resources={"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    ) == {
        "resources.requests.cpu": "must be at least 10m per container, the namespace's LimitRange (got '5m')",
        "resources.requests.memory": "must be at least 32Mi per container, the namespace's LimitRange (got '16Mi')",
        "resources.limits.cpu": "must be at most 1 per container, the namespace's LimitRange (got '2')",
        "resources.limits.memory": "must be at most 1Gi per container, the namespace's LimitRange (got '2Gi')",
    }


def test_resources_unknown_key() -> None:
    found = invalid(resources={"requests": {"ephemeral-storage": "1Gi"}})
    assert found == {"resources.requests.ephemeral-storage": "unknown key; allowed: cpu, memory"}


# ---------------------------------------------------------------- env and envFrom


def test_env_valid_names_and_values() -> None:
    env = {"A": "1", "_x": "", "Camel_Case9": "with spaces and = signs"}
    assert valid(env=env).env == env


@pytest.mark.parametrize("name", ["1BAD", "WITH-DASH", "WITH.DOT", "SPACE NAME", ""])
def test_env_invalid_names(name: str) -> None:
    found = invalid(env={name: "x"})
    assert list(found.values()) == ["is not a valid variable name: must match ^[A-Za-z_][A-Za-z0-9_]*$"]


@pytest.mark.parametrize(("value", "shown"), [(1, "1"), (True, "true"), (1.5, "1.5"), (None, "null")])
def test_env_values_must_be_strings(value: object, shown: str) -> None:
    hint = "" if value is None else "; quote it in YAML"
    assert invalid(env={"KEY": value}) == {"env.KEY": f"must be a string (got {shown}){hint}"}


def test_env_must_be_a_mapping() -> None:
    assert invalid(env=["A=1"]) == {"env": "must be a mapping (got a list)"}


def test_env_from_sources() -> None:
    config = valid(envFrom=[{"secretRef": {"name": "s1"}}, {"configMapRef": {"name": "cm.one"}}])
    assert config.env_from[0].secret_ref is not None and config.env_from[0].secret_ref.name == "s1"
    assert (
        config.env_from[1].config_map_ref is not None and config.env_from[1].config_map_ref.name == "cm.one"
    )


def test_env_from_rules() -> None:
    assert invalid(
        envFrom=[
            {"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}},
            {},
            {"secretRef": {}},
            {"secretRef": {"name": "Bad_Name"}},
            {"secretRef": {"name": "a", "optional": True}},
            {"prefix": "X_", "secretRef": {"name": "a"}},
            "a-secret",
        ]
    ) == {
        "envFrom[0]": "needs exactly one of secretRef.name or configMapRef.name",
        "envFrom[1]": "needs exactly one of secretRef.name or configMapRef.name",
        "envFrom[2].secretRef.name": "is required",
        "envFrom[3].secretRef.name": (
            "must be a Kubernetes object name (lower-case letters, digits, '-' and '.') (got 'Bad_Name')"
        ),
        "envFrom[4].secretRef.optional": "unknown key; allowed: name",
        "envFrom[5].prefix": "unknown key; allowed: secretRef, configMapRef",
        "envFrom[6]": "must be a mapping (got 'a-secret')",
    }


def test_env_from_must_be_a_list() -> None:
    assert invalid(envFrom={"secretRef": {"name": "a"}}) == {"envFrom": "must be a list (got a mapping)"}


# ---------------------------------------------------------------- writableDirs


def test_writable_dirs_valid() -> None:
    dirs = ["/data", "/app/.cache", "/var/run/my_app-1", "/tmp/"]
    assert valid(writableDirs=dirs).writable_dirs == tuple(dirs)


@pytest.mark.parametrize("path", ["relative", "/", "/with space", "/ünï", "~/x", "/a:b", ""])
def test_writable_dirs_invalid(path: str) -> None:
    assert invalid(writableDirs=["/ok", path]) == {
        "writableDirs[1]": f"must match ^/[a-zA-Z0-9._/-]+$ (got {path!r})"
    }


# ---------------------------------------------------------------- databases


def test_databases_default_to_off() -> None:
    assert valid(databases={}).enabled_databases() == []


def test_database_switches() -> None:
    config = valid(databases={"redis": True, "mariadb": False, "mongodb": {}, "minio": {"enabled": False}})
    assert config.database_names() == ["mongodb", "redis"]
    assert config.database("mariadb") is None
    assert config.database(Engine.REDIS) is not None


def test_enabled_databases_come_in_fixed_order() -> None:
    config = valid(
        databases={"mariadb": True, "minio": True, "redis": True, "mongodb": True, "postgresql": True}
    )
    assert config.database_names() == ["postgresql", "mongodb", "redis", "minio", "mariadb"]


def test_database_defaults() -> None:
    config = valid(databases={engine.value: True for engine in Engine})
    defaults = {db.name: (db.version, db.storage) for db in config.enabled_databases()}
    assert defaults == {
        "postgresql": ("16", "1Gi"),
        "mongodb": ("7.0.14", "1Gi"),
        "redis": ("7.4", None),
        "minio": (None, "1Gi"),
        "mariadb": ("11.4", "1Gi"),
    }


def test_database_version_and_storage() -> None:
    config = valid(
        databases={"postgresql": {"version": 17, "storage": "5Gi"}, "minio": {"version": "RELEASE.2025"}}
    )
    postgresql, minio = config.enabled_databases()
    assert (postgresql.version, postgresql.storage) == ("17", "5Gi")
    assert minio.version == "RELEASE.2025"


@pytest.mark.parametrize("storage", ["1Gi", "512Mi", "100Mi", "5Gi"])
def test_storage_valid(storage: str) -> None:
    database = valid(databases={"mongodb": {"storage": storage}}).database("mongodb")
    assert database is not None and database.storage == storage


@pytest.mark.parametrize("storage", ["10Gi", "50Mi", "1Ti", "5121Mi"])
def test_storage_outside_the_limit_ranges_claim_bounds_is_refused(storage: str) -> None:
    # The cluster would accept the database and refuse its volume, long after the apply.
    assert invalid(databases={"postgresql": {"storage": storage}}) == {
        "databases.postgresql.storage": "must be between 100Mi and 5Gi, the namespace's LimitRange "
        f"for a volume (got {storage!r})"
    }


def test_storage_smaller_than_the_live_volume_is_refused() -> None:
    from handlers.config import Engine, check_live_storage

    config = valid(databases={"mariadb": {"storage": "1Gi"}, "postgresql": {"storage": "2Gi"}})
    check_live_storage(config, {Engine.POSTGRESQL: ("app-postgresql-1", 2048)})  # same size: fine
    with pytest.raises(ConfigError) as error:
        check_live_storage(config, {Engine.MARIADB: ("app-mariadb-data", 2048)})
    [problem] = error.value.problems
    assert problem.path == "databases.mariadb.storage"
    assert problem.message.startswith("must be at least 2Gi, the size of the live volume app-mariadb-data")


@pytest.mark.parametrize("storage", ["1GB", "1G", "1", "1gi", "1.5Gi", "1Ki"])
def test_storage_invalid(storage: str) -> None:
    assert invalid(databases={"minio": {"storage": storage}}) == {
        "databases.minio.storage": f"must match ^[0-9]+(Mi|Gi|Ti)$ (got {storage!r})"
    }


def test_storage_not_for_redis() -> None:
    assert invalid(databases={"redis": {"storage": "1Gi"}}) == {
        "databases.redis.storage": "unknown key; allowed: enabled, version"
    }


def test_version_rules() -> None:
    assert invalid(databases={"mariadb": {"version": 11.4}}) == {
        "databases.mariadb.version": (
            "must be a string: quote it in YAML (got 11.4; an unquoted 11.10 would read as 11.1)"
        )
    }
    assert invalid(databases={"postgresql": {"version": "16; rm -rf /"}}) == {
        "databases.postgresql.version": "must match ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ (got '16; rm -rf /')"
    }


@pytest.mark.parametrize(("value", "shown"), [(None, "null"), ("yes", "'yes'"), (1, "1"), ([], "a list")])
def test_database_shape(value: object, shown: str) -> None:
    assert invalid(databases={"postgresql": value}) == {
        "databases.postgresql": f"must be true, false or a mapping (got {shown})"
    }


def test_enabled_must_be_boolean() -> None:
    assert invalid(databases={"redis": {"enabled": "yes"}}) == {
        "databases.redis.enabled": "must be true or false (got 'yes')"
    }


def test_postgresql_bootstrap() -> None:
    config = valid(
        databases={
            "postgresql": {
                "bootstrap": {
                    "initSQL": "CREATE ROLE reader",
                    "postInitApplicationSQL": ["SELECT 1", "SELECT 2"],
                }
            }
        }
    )
    database = config.database("postgresql")
    assert database is not None
    assert database.init_sql == ("CREATE ROLE reader",)
    assert database.post_init_application_sql == ("SELECT 1", "SELECT 2")


def test_bootstrap_rules() -> None:
    assert invalid(
        databases={
            "postgresql": {"bootstrap": {"initSql": ["x"], "postInitApplicationSQL": [1]}},
            "mariadb": {"bootstrap": {"initSQL": ["x"]}},
        }
    ) == {
        "databases.postgresql.bootstrap.initSql": (
            "unknown key; allowed: initSQL, postInitApplicationSQL (did you mean 'initSQL'?)"
        ),
        "databases.postgresql.bootstrap.postInitApplicationSQL[0]": "must be a string (got 1); quote it in YAML",
        "databases.mariadb.bootstrap": "unknown key; allowed: enabled, version, storage",
    }


def test_unknown_engine() -> None:
    assert invalid(databases={"mysql": True}) == {
        "databases.mysql": "unknown key; allowed: postgresql, mongodb, redis, minio, mariadb"
    }


# ---------------------------------------------------------------- ingress and metrics


def test_ingress() -> None:
    assert valid(ingress={"enabled": False}).ingress.enabled is False
    annotations = {"cert-manager.io/cluster-issuer": "letsencrypt", "simple": "x"}
    assert valid(ingress={"annotations": annotations}).ingress.annotations == annotations


def test_ingress_rules() -> None:
    assert invalid(
        ingress={"enabled": "no", "annotations": {"bad key!": "x", "example.com/ok": 5}, "host": "x"}
    ) == {
        "ingress.enabled": "must be true or false (got 'no')",
        'ingress.annotations."bad key!"': (
            "is not a valid annotation key ([prefix/]name, name of letters, digits, '-', '_', '.')"
        ),
        'ingress.annotations."example.com/ok"': "must be a string (got 5); quote it in YAML",
        "ingress.host": "unknown key; allowed: enabled, annotations",
    }


@pytest.mark.parametrize("interval", ["30s", "1m", "2h", "15s"])
def test_metrics_interval_valid(interval: str) -> None:
    config = valid(metrics={"enabled": True, "interval": interval})
    assert (config.metrics.enabled, config.metrics.interval) == (True, interval)


@pytest.mark.parametrize("interval", ["30", "1d", "1.5m", "s", "30 s"])
def test_metrics_interval_invalid(interval: str) -> None:
    assert invalid(metrics={"interval": interval}) == {
        "metrics.interval": f"must match ^[0-9]+(s|m|h)$ (got {interval!r})"
    }


def test_metrics_interval_must_be_quoted_when_a_number() -> None:
    assert invalid(metrics={"interval": 30}) == {
        "metrics.interval": "must be a string (got 30); quote it in YAML"
    }


def test_keys_that_yaml_reads_as_numbers_or_booleans() -> None:
    assert problems_of("projectId: myapp\nenv: {1: a}\napp: {5: 1}\ndatabases: {true: true}\n") == {
        "env.1": "is not a valid variable name: must match ^[A-Za-z_][A-Za-z0-9_]*$",
        "app.5": "unknown key; allowed: port, healthPath, metricsPath",
        "databases.true": "unknown key; allowed: postgresql, mongodb, redis, minio, mariadb",
    }


def test_a_trailing_newline_does_not_slip_past_a_pattern() -> None:
    found = invalid(
        image={"repository": "ghcr.io/org/app\n"},
        envFrom=[{"secretRef": {"name": "keys\n"}}],
        ingress={"annotations": {"example.com/key\n": "x"}},
        projectId="myapp\n",
        writableDirs=["/data\n"],
    )
    assert set(found) == {
        "image.repository",
        "envFrom[0].secretRef.name",
        'ingress.annotations."example.com/key\\n"',
        "projectId",
        "writableDirs[0]",
    }
