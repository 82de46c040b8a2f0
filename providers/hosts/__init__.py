"""The code hosts' clients, through their SDKs: only the worker imports this package."""
