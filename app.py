"""WSGI entry point: `python app.py` serves L1 with waitress; `app:app` for other servers."""

from l1web.settings import Settings
from l1web.web import create_app

settings = Settings.from_env()
app = create_app(settings)

if __name__ == "__main__":
    from waitress import serve

    from l1web.web.serving import waitress_options

    print(f"L1 listening on http://{settings.host}:{settings.port}", flush=True)
    serve(app, **waitress_options(settings))
