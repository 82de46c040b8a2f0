"""The directory back-end survives being killed mid-write: a real SIGKILL, many times, at random
moments of a first write and of updates. Each time the folder is absent or one complete
version, never a mixture; and what the killed write left never blocks the next one."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from handlers.cluster.directory import MARKER, DirectoryCluster
from handlers.cluster.resources import plan
from tests.support.manifests import NS, REPO, environment, obj

ROOT = Path(__file__).resolve().parents[2]

# Applies two versions of one environment, one after the other, for as long as it lives.
WRITER = """
import asyncio, sys
from handlers.cluster.directory import DirectoryCluster
from tests.handlers.test_directory_crash import NS, REPO, version

async def main() -> None:
    cluster = DirectoryCluster(sys.argv[1])
    print("started", flush=True)
    n = 0
    while True:
        await cluster.apply(NS, REPO, version(n % 2))
        n += 1

asyncio.run(main())
"""


def version(n: int) -> list[dict[str, Any]]:
    """Two versions that differ in which objects there are and in what they hold; many files,
    so that a write takes long enough to be cut in the middle."""
    manifests = environment(mongodb=n == 0)
    manifests += [obj("v1", "ConfigMap", f"extra-{i}", data={"version": str(n)}) for i in range(40 + 5 * n)]
    return manifests


def file_names(n: int) -> set[str]:
    planned = plan(NS, version(n))
    width = max(2, len(str(len(planned) - 1)))
    return {f"{i:0{width}d}-{p.ref.kind.lower()}-{p.ref.name}.yaml" for i, p in enumerate(planned)}


def check_whole(folder: Path) -> None:
    if not folder.exists():
        return
    names = {p.name for p in folder.iterdir()} - {MARKER}
    assert (folder / MARKER).is_file(), sorted(names)
    assert names in (file_names(0), file_names(1)), sorted(names)
    held = {(folder / name).read_text().count("version: '1'") for name in names if "extra-" in name}
    assert len(held) == 1, "files of two versions in one folder"


def test_a_sigkill_mid_write_never_leaves_a_half_folder_or_a_wedge(tmp_path: Path) -> None:
    root = tmp_path / "environments"
    rng = random.Random(10)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills = 0
    for _ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "started"
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
        kills += 1
        check_whole(root / NS)

    cluster = DirectoryCluster(root)
    result = asyncio.run(cluster.apply(NS, REPO, version(0)))
    assert result.namespace == NS
    check_whole(root / NS)
    assert asyncio.run(cluster.destroy(NS, REPO)).deleted
    # Nothing of the killed writes is left behind either.
    assert list(root.iterdir()) == []
    assert kills == 8


def test_leftovers_never_block_the_back_end(tmp_path: Path) -> None:
    """What a killed write leaves: a folder built aside, a folder half deleted, a temporary
    file of an earlier version's per-file writes, and (without an atomic exchange) the old
    folder displaced with the new one not yet in place."""
    root = tmp_path / "environments"
    cluster = DirectoryCluster(root)
    root.mkdir()
    (root / f".{NS}.new-0123abcd").mkdir()
    (root / f".{NS}.new-0123abcd" / "00-namespace.yaml").write_text("half")
    (root / f".deleting-{NS}-89abcdef").mkdir()
    (root / NS).mkdir()
    (root / NS / ".00-namespace-shop-pr-7.yaml.x1y2.tmp").write_text("half")
    # Only a temporary file in the folder: the first write was killed (issue 8 item 10).
    asyncio.run(cluster.apply(NS, REPO, version(0)))
    assert sorted(p.name for p in root.iterdir()) == [NS]
    check_whole(root / NS)

    # The old folder displaced by a swap that was cut short: it is the environment, and comes back.
    os.rename(root / NS, root / f".{NS}.old-00ff00ff")
    assert asyncio.run(cluster.read_credentials(NS))  # its generated passwords are still there
    assert sorted(p.name for p in root.iterdir()) == [NS]
    assert asyncio.run(cluster.destroy(NS, REPO)).deleted
    assert list(root.iterdir()) == []
