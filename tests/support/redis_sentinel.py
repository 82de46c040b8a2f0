"""A Redis master, its replica and a sentinel watching them: real redis-server processes.

The sentinel is the same binary in sentinel mode (`redis-server <file> --sentinel`), with
quorum 1, so one sentinel can fail the master over (`SENTINEL FAILOVER`). The servers and
the sentinel each require a password when one is given, as a production Sentinel does.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, free_port, redis_server_binary

MASTER_NAME = "k8s-ee-master"


class SentinelGroup:
    def __init__(self, password: str | None = None, sentinel_password: str | None = None) -> None:
        auth = ("--requirepass", password, "--masterauth", password) if password else ()
        self.password = password
        self.sentinel_password = sentinel_password
        self.master = RedisServer(*auth, password=password)
        self.replica: RedisServer | None = None
        self.sentinel_port = free_port()
        self.sentinel_process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sentinel_port}"

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, password=self.sentinel_password)

    def start(self) -> SentinelGroup:
        self.master.start()
        auth = ("--requirepass", self.password, "--masterauth", self.password) if self.password else ()
        self.replica = RedisServer(
            "--replicaof", "127.0.0.1", str(self.master.port), *auth, password=self.password
        ).start()
        lines = [
            f"port {self.sentinel_port}",
            "bind 127.0.0.1",
            f"dir {self.master.dir}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 1",
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
            f"sentinel failover-timeout {MASTER_NAME} 5000",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {self.password}")
        if self.sentinel_password:
            lines.append(f"requirepass {self.sentinel_password}")
        config = Path(self.master.dir) / "sentinel.conf"
        config.write_text("\n".join(lines) + "\n")
        self.sentinel_process = subprocess.Popen(
            [redis_server_binary(), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: self._replicas_known() >= 1, "the sentinel did not find the replica")
        return self

    def _replicas_known(self) -> int:
        try:
            return len(self.sentinel().sentinel_slaves(MASTER_NAME))
        except redis.RedisError:
            return 0

    def master_port(self) -> int:
        _host, port = self.sentinel().sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def failover(self) -> int:
        """Promote the replica; answers the new master's port once the sentinel names it."""
        assert self.replica is not None
        self._wait(self._replica_in_sync, "the replica did not catch up")
        self.sentinel().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        self._wait(lambda: self.master_port() == self.replica.port, "the sentinel did not fail over")  # type: ignore[union-attr]
        self._wait(lambda: self.replica.client().info("replication")["role"] == "master", "no promotion")  # type: ignore[union-attr]
        # Until the sentinel demotes the old master it still takes writes, which the resync then
        # drops (Redis replication is asynchronous): wait for it to be a replica.
        self._wait(lambda: self.master.client().info("replication")["role"] == "slave", "no demotion")
        return self.replica.port

    def _replica_in_sync(self) -> bool:
        assert self.replica is not None
        info = self.replica.client().info("replication")
        return bool(info.get("master_link_status") == "up")

    @staticmethod
    def _wait(condition: object, message: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not _holds(condition):
            if time.monotonic() > deadline:
                raise RuntimeError(message)
            time.sleep(0.05)

    def stop(self) -> None:
        if self.sentinel_process is not None:
            self.sentinel_process.terminate()
            self.sentinel_process.wait(10)
            self.sentinel_process = None
        for server in (self.replica, self.master):
            if server is not None:
                server.cleanup()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _holds(condition: object) -> bool:
    """A condition read off a server that is changing role: a server closes its clients' connections
    when it is demoted (or promoted), which is "not yet", not a failure."""
    try:
        return bool(condition())  # type: ignore[operator]
    except redis.ConnectionError:
        return False
