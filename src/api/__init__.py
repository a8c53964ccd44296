"""The HTTP layer: Litestar app, controllers, wire schemas, errors, authentication, request context, metrics.

It imports only from `application`, `domain` and libraries; the composition root hands it use cases and
settings through `api.app.ApiDependencies`.
"""
