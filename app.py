"""WSGI entry point: `python app.py` serves L1 with waitress; `app:app` for other servers."""

from l1web import create_app
from l1web.settings import Settings

settings = Settings.from_env()
app = create_app(settings)

if __name__ == "__main__":
    from waitress import serve

    print(f"L1 listening on http://{settings.host}:{settings.port}", flush=True)
    serve(app, host=settings.host, port=settings.port, threads=8, ident="L1")
