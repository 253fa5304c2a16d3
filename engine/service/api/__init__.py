"""The HTTP API: request and response models, routes, the OpenAPI document, middleware and handlers."""
