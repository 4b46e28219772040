"""L1, the Art DAG rendering server. The web factory is `l1web.web.create_app`."""

__version__ = "0.1.0"
