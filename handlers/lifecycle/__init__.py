"""Environments that look after themselves: activity, idle hibernation, wake, TTLs, the sweeps.

- `activity`: when each environment was last used, and when it falls idle (Redis only, so the
  gateway's wake service records visits too).
- `idle`: hibernates environments whose idle deadline passed.
- `wake_watch`: after a wake, follows the app until it is ready, then routes the host back to it.
- `resync`: lists each repository's open changes on its host, the safety net for missed webhooks.
- `sweep`: TTLs and their warnings, preserve expiry, namespaces whose record is gone.
- `ticker`: runs the periodic ones, each under a lock, so one worker does each run.
- `counters`: what the runs did, in Redis, for the gateway's /metrics.
"""
