"""WSGI entry point: `python app.py` serves L1 with waitress; `app:app` for other servers."""

from l1web.settings import Settings
from l1web.web import create_app

settings = Settings.from_env()
app = create_app(settings)

if __name__ == "__main__":
    from waitress import serve

    print(f"L1 listening on http://{settings.host}:{settings.port}", flush=True)
    serve(
        app, host=settings.host, port=settings.port, ident="L1",
        threads=8,
        # Many clients poll status fragments at once: accept them rather than queue at 100.
        connection_limit=500,
        # Read uploads in 1 MiB slices (waitress's 8 KiB default caps loopback upload speed).
        recv_bytes=1024 * 1024,
        # Waitress refuses a larger body itself; let the app's own limit (a clear 413) decide.
        max_request_body_size=settings.max_upload_bytes + 1024 * 1024,
    )
