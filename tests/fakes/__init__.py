"""Loopback fakes of the platforms and services the product talks to."""
