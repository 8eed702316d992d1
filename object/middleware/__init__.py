"""The proxy's middleware pipeline: Swift API features built on the core controllers.

As in Swift's proxy, each feature (static and dynamic large objects today; TempURL,
versioning, bulk... to come) is one WSGI middleware in its own module, wrapping the app below
it. It sees every request first and answers it, passes it on, or makes sub-requests (made
with ``subrequest.subrequest``) to the app below it as the caller. ``pipeline.py`` builds the
chain from ``[proxy] pipeline`` in the config and puts ``Front`` (the gatekeeper) at its head:
the caller is authenticated there once, so every sub-request acts as that caller and gains no
right it lacks, and what clients must not send or see (system metadata, backend headers)
is stripped there.
"""
