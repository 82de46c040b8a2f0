"""The GitOps back-end: an environment as a folder of plain manifests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from handlers import naming
from handlers.cluster import ClusterError, OwnershipError, PermanentClusterError, directory
from handlers.cluster.directory import MARKER, DirectoryCluster
from tests.support.manifests import NS, REPO, environment, rendered


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def cluster(tmp_path: Path) -> DirectoryCluster:
    return DirectoryCluster(tmp_path / "environments")


def files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def manifest_files(folder: Path) -> list[str]:
    return [name for name in files(folder) if name.endswith(".yaml")]


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        path.name: (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes())
        for path in folder.iterdir()
    }


def test_apply_writes_one_plain_manifest_per_object_in_order(cluster: DirectoryCluster) -> None:
    manifests = environment()

    result = run(cluster.apply(NS, REPO, manifests))

    folder = cluster.root / NS
    names = manifest_files(folder)
    assert names[:3] == [
        "00-namespace-shop-pr-7.yaml",
        "01-resourcequota-pr-quota.yaml",
        "02-limitrange-pr-limits.yaml",
    ]
    assert names[-1] == f"{len(manifests) - 1:02d}-servicemonitor-{NS}-app.yaml"
    for name, manifest in zip(names, manifests, strict=True):
        assert yaml.safe_load((folder / name).read_text()) == manifest
    assert (
        result.created_namespace
        and result.created == result.applied
        and len(result.applied) == len(manifests)
    )
    assert json.loads((folder / MARKER).read_text())["repository"] == REPO

    secret = folder / "04-secret-app-redis-credentials.yaml"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / names[0]).stat().st_mode) == 0o644


def test_the_folder_is_a_usable_gitops_source(cluster: DirectoryCluster) -> None:
    """What Argo CD's directory source reads (*.yaml, *.yml, *.json) must all be manifests, with
    nothing a server would add."""
    manifests = environment()
    manifests[1]["status"] = {"used": {"pods": "1"}}
    manifests[1]["metadata"].update(resourceVersion="12", uid="u-1", managedFields=[{"manager": "x"}])
    run(cluster.apply(NS, REPO, manifests))

    folder = cluster.root / NS
    read_by_argo = [p for p in folder.iterdir() if re.fullmatch(r".*\.(yaml|yml|json|jsonnet)", p.name)]
    assert len(read_by_argo) == len(manifests)
    for path in read_by_argo:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert len(documents) == 1
        [obj] = documents
        assert {"apiVersion", "kind", "metadata"} <= obj.keys() and "status" not in obj
        assert not {"resourceVersion", "uid", "managedFields", "creationTimestamp"} & obj["metadata"].keys()
        assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == NS


def test_identical_reapply_touches_no_file(cluster: DirectoryCluster) -> None:
    run(cluster.apply(NS, REPO, environment()))
    before = snapshot(cluster.root / NS)

    result = run(cluster.apply(NS, REPO, environment()))

    assert snapshot(cluster.root / NS) == before
    assert result.created == [] and result.pruned == [] and not result.created_namespace


def test_switching_a_database_off_removes_its_files(cluster: DirectoryCluster) -> None:
    run(cluster.apply(NS, REPO, environment(mongodb=True)))

    result = run(cluster.apply(NS, REPO, environment(mongodb=False)))

    names = manifest_files(cluster.root / NS)
    assert len(names) == len(environment(mongodb=False))
    assert not any("mongodb" in name for name in names)
    # Objects after the removed ones moved up in the order: renamed, not duplicated.
    assert "05-persistentvolumeclaim-app-data.yaml" in names  # was 07
    assert sum("app-data" in name for name in names) == 1
    assert sorted(str(ref) for ref in result.pruned) == [
        "MongoDBCommunity/app-mongodb",
        "Secret/app-mongodb-credentials",
    ]
    assert result.created == []


def test_files_of_others_in_the_folder_are_left_alone(cluster: DirectoryCluster) -> None:
    run(cluster.apply(NS, REPO, environment()))
    extra = cluster.root / NS / "kustomization.yaml"
    extra.write_text("resources: []\n")

    run(cluster.apply(NS, REPO, environment(mongodb=False)))

    assert extra.read_text() == "resources: []\n"


def test_leftovers_of_an_interrupted_write_are_cleaned(cluster: DirectoryCluster) -> None:
    run(cluster.apply(NS, REPO, environment()))
    leftover = cluster.root / NS / ".01-resourcequota-pr-quota.yaml.abc123.tmp"
    leftover.write_text("half")

    run(cluster.apply(NS, REPO, environment()))

    assert not leftover.exists()


def test_a_folder_not_written_by_us_is_never_touched(cluster: DirectoryCluster) -> None:
    folder = cluster.root / NS
    folder.mkdir(parents=True)
    (folder / "00-namespace-shop-pr-7.yaml").write_text("kind: Namespace\n")

    with pytest.raises(OwnershipError, match="not written by k8s-ee-gateway"):
        run(cluster.apply(NS, REPO, environment()))
    with pytest.raises(OwnershipError):
        run(cluster.destroy(NS, REPO))

    assert files(folder) == ["00-namespace-shop-pr-7.yaml"]


def test_an_empty_folder_is_taken(cluster: DirectoryCluster) -> None:
    (cluster.root / NS).mkdir(parents=True)
    assert run(cluster.apply(NS, REPO, environment())).created_namespace


def test_another_repositorys_folder_is_refused(cluster: DirectoryCluster) -> None:
    run(cluster.apply(NS, "other/private", environment(repository="other/private")))
    before = snapshot(cluster.root / NS)

    with pytest.raises(OwnershipError) as refused:
        run(cluster.apply(NS, REPO, environment()))
    assert "private" not in str(refused.value)
    with pytest.raises(OwnershipError):
        run(cluster.destroy(NS, REPO))

    assert snapshot(cluster.root / NS) == before


def test_destroy_removes_the_folder(cluster: DirectoryCluster) -> None:
    run(cluster.apply(NS, REPO, environment()))
    run(cluster.apply("shop-pr-8", REPO, environment(name="shop-pr-8")))

    result = run(cluster.destroy(NS, REPO))

    assert result.deleted and not result.already_gone
    assert files(cluster.root) == ["shop-pr-8"]
    assert run(cluster.destroy(NS, REPO)).already_gone


def test_destroy_keeps_a_preserved_environment(cluster: DirectoryCluster) -> None:
    manifests = environment()
    manifests[0]["metadata"]["labels"][naming.LABEL_PRESERVE] = "true"
    run(cluster.apply(NS, REPO, manifests))

    result = run(cluster.destroy(NS, REPO))

    assert result.preserved and not result.deleted
    assert (cluster.root / NS).is_dir()


def test_read_credentials_from_the_secret_files(cluster: DirectoryCluster) -> None:
    assert run(cluster.read_credentials(NS)) == {}
    run(cluster.apply(NS, REPO, environment()))
    assert run(cluster.read_credentials(NS)) == {"redis": "redis-pass-0123", "mongodb": "mongo-pass-0123"}


def test_namespaces_lists_the_environments(cluster: DirectoryCluster) -> None:
    assert run(cluster.namespaces()) == []
    run(cluster.apply(NS, REPO, environment()))
    (cluster.root / "notes").mkdir()

    [info] = run(cluster.namespaces())

    assert info.name == NS and info.repository == REPO and not info.preserved
    assert info.labels[naming.LABEL_MANAGED_BY] == naming.MANAGED_BY


def test_rendered_environment_round_trip(cluster: DirectoryCluster) -> None:
    everything = {name: True for name in ("postgresql", "mongodb", "redis", "minio", "mariadb")}
    manifests = rendered(everything)
    namespace = manifests[0]["metadata"]["name"]

    run(cluster.apply(namespace, "Acme/Shop", manifests))
    passwords = run(cluster.read_credentials(namespace))
    before = snapshot(cluster.root / namespace)
    run(cluster.apply(namespace, "Acme/Shop", rendered(everything, passwords)))

    assert snapshot(cluster.root / namespace) == before
    assert len(manifest_files(cluster.root / namespace)) == len(manifests)
    assert set(passwords) == {
        "mongodb",
        "redis",
        "minio-access-key",
        "minio-secret-key",
        "mariadb",
        "mariadb-root",
    }


def test_bad_names_never_reach_the_file_system(cluster: DirectoryCluster, tmp_path: Path) -> None:
    for namespace in ("../escape", "a/b", "UPPER", ""):
        with pytest.raises(PermanentClusterError):
            run(cluster.apply(namespace, REPO, environment()))
        with pytest.raises(PermanentClusterError):
            run(cluster.destroy(namespace, REPO))
    bad = environment()
    bad[3]["metadata"]["name"] = "../../etc"
    with pytest.raises(PermanentClusterError):
        run(cluster.apply(NS, REPO, bad))
    assert not (tmp_path / "etc").exists() and not cluster.root.exists()


def test_file_system_failures_are_cluster_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(ClusterError, match="cannot update the manifests folder"):
        run(DirectoryCluster(blocker).apply(NS, REPO, environment()))


# -- no-op redeploys and libyaml ------------------------------------------------------------------


def test_unchanged_until_a_file_is_edited_or_the_manifests_change(cluster: DirectoryCluster) -> None:
    manifests = environment()
    assert not run(cluster.unchanged(NS, REPO, manifests))  # nothing written yet
    run(cluster.apply(NS, REPO, manifests))
    folder = cluster.root / NS
    assert json.loads((folder / MARKER).read_text())["digest"].startswith("sha256:")

    assert run(cluster.unchanged(NS, REPO, environment()))
    assert not run(cluster.unchanged(NS, "acme/other", manifests))
    assert not run(cluster.unchanged(NS, REPO, environment(mongodb=False)))

    # Edited by hand, a moment after the apply: compared and put right by the next apply...
    edited = folder / manifest_files(folder)[1]
    edited.write_text(edited.read_text().replace("pods: '5'", "pods: '50'"))
    later = (folder / MARKER).stat().st_mtime_ns + 1_000_000
    os.utime(edited, ns=(later, later))
    assert not run(cluster.unchanged(NS, REPO, manifests))
    run(cluster.apply(NS, REPO, manifests))
    assert yaml.safe_load(edited.read_text()) == manifests[1]
    # ...which is then a no-op again.
    assert run(cluster.unchanged(NS, REPO, manifests))

    # A file removed by hand.
    (folder / manifest_files(folder)[-1]).unlink()
    assert not run(cluster.unchanged(NS, REPO, manifests))
    assert not run(DirectoryCluster(cluster.root, reapply_after=None).unchanged(NS, REPO, environment()))


@pytest.mark.skipif(not hasattr(yaml, "CSafeDumper"), reason="PyYAML without libyaml")
def test_libyaml_writes_and_reads_the_same_bytes_as_pure_python() -> None:
    """The folder's files are the same whichever dumper wrote them: a worker with libyaml and
    one without never rewrite each other's files."""
    every = {"postgresql": True, "mongodb": True, "redis": True, "minio": True, "mariadb": True}
    manifests = [*rendered(every), *environment()]
    assert directory.DUMPER is yaml.CSafeDumper and directory.LOADER is yaml.CSafeLoader
    for manifest in manifests:
        fast = directory._render(manifest, yaml.CSafeDumper)
        pure = directory._render(manifest, yaml.SafeDumper)
        assert fast == pure
        assert yaml.load(fast, Loader=yaml.CSafeLoader) == yaml.load(pure, Loader=yaml.SafeLoader)
