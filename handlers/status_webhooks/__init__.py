"""Outbound status webhooks: each environment state change, POSTed to the configured subscribers.

config       K8S_EE_STATUS_WEBHOOKS, parsed and checked at start-up
payload      the JSON body (and docs/status-webhook.schema.json, generated from it)
destination  which addresses a delivery may reach (no loopback, private or metadata ones)
deliver      one signed HTTP POST to an address resolved and checked once
store        the delivery records in Redis (what the admin API shows)
queue        creating deliveries and the arq job that sends and retries them
listing      what the admin API lists and looks up

Nothing is imported here, so the web process can use `listing` without the worker's modules.
"""
