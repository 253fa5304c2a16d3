"""The JobQueue seam: its protocol, the one job runner, progress watchers, and both implementations."""
