"""A lock in Redis held by a token: renewed and released only by whoever holds it.

The lock is a key set with `SET NX PX` to a random token; these scripts renew and release it
only if it still holds that token, so a holder that was paused past the lock's lifetime cannot
extend or delete a lock another has taken since. The environments' locks (handlers/desired.py),
the periodic runs' (handlers/lifecycle/runs.py) and the reports' (handlers/report.py) use them.
"""

from __future__ import annotations

# KEYS: the lock. ARGV: token, new lifetime in ms. Answers 1 when renewed.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: the lock. ARGV: token. Answers 1 when released.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
