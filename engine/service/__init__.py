"""The engine service: HTTP API, job queue and worker."""
