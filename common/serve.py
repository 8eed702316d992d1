"""Runs a service's WSGI app under gunicorn, the same way for every service.

Threads, no eventlet: the services spend their time in disk and network I/O, where threads
overlap well and need no monkey-patching. The worker is soko's gthread worker
(``common/worker.py``): heads read by the event loop, timeouts on every client read and
write, threads on demand, and gunicorn's own errors answered by the app.
"""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from soko.common.config import Config
from soko.common.service import ServiceSpec

# The request heads Swift's server reads (measured on Swift 2.38; swift/common/wsgi.py,
# bufferedhttp.py, constraints.py), so that what Swift would read reaches the app's own
# checks (90 metadata items, 8 KiB headers...) and gets its 400, not a 431 from gunicorn:
# up to 200 header fields (1.6 × Swift's MAX_HEADER_COUNT of 126), each line up to 8191
# bytes with its CRLF (MAX_HEADER_SIZE 8192), and a request line as long as gunicorn takes
# (8190; Swift's max_request_line is 8192). A head is thus at most ~1.6 MiB, read by the
# event loop within header_timeout (common/worker.py).
HEAD_LIMITS = {"limit_request_fields": 200, "limit_request_field_size": 8191,
               "limit_request_line": 8190}


class ServiceApplication(BaseApplication):
    """A gunicorn application whose settings come from the service's config section."""

    def __init__(self, spec: ServiceSpec, config: Config, log_level: str = "info"):
        self.spec = spec
        self.config = config
        self.log_level = log_level
        super().__init__()

    def load_config(self) -> None:
        section = self.section
        settings = {
            "bind": f"{section.bind_ip}:{section.port}",
            "workers": section.workers,
            "threads": section.threads,
            "worker_connections": section.max_clients,
            "worker_class": "soko.common.worker.SokoWorker",
            "timeout": section.timeout,
            # gunicornc's socket defaults to one path in $HOME shared by every gunicorn of
            # the user: units would take it from each other, and soko up does not use it.
            "control_socket_disable": True,
            "graceful_timeout": 10,
            "keepalive": 5,
            "proc_name": f"soko-{self.spec.name}",
            "loglevel": self.log_level,
            "errorlog": "-",
            "accesslog": None,  # soko's middleware writes the access log, with the trans id
            "post_worker_init": _worker_logging,
            **HEAD_LIMITS,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    @property
    def section(self):
        """The service's config section (its worker reads the client timeouts there)."""
        return self.config.section(self.spec.name)

    def load(self):
        return honour_connection_close(self.spec.make_app(self.config))


def honour_connection_close(app):
    """Makes gunicorn close the connection when the app answers ``Connection: close``.

    gunicorn drops an app's hop-by-hop headers and keeps the connection alive, so an app
    that refused a body without reading it (a 413, a 401 on a PUT) could not stop the
    client from sending that body on a connection gunicorn then tries to reuse. The
    ``start_response`` gunicorn passes is a method of its response object, whose
    ``force_close`` makes it announce ``Connection: close`` and close after answering.
    """

    def wsgi(environ, start_response):
        def start(status, headers, exc_info=None):
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
                force_close = getattr(getattr(start_response, "__self__", None),
                                      "force_close", None)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wsgi


def _worker_logging(worker) -> None:
    from soko.common.log import setup_logging

    setup_logging(worker.cfg.loglevel or "info")


def serve(spec: ServiceSpec, config: Config, log_level: str = "info") -> None:
    """Blocks serving ``spec`` until gunicorn is told to stop (SIGTERM/SIGINT)."""
    if spec.main is not None:
        from soko.common.service import import_ref

        import_ref(spec.main)(config, log_level)
        return
    ServiceApplication(spec, config, log_level).run()
