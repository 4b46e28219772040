"""WSGI entry point: `python app.py` serves L1 with waitress; `app:app` for other servers."""

from l1web.settings import Settings
from l1web.web import create_app

settings = Settings.from_env()
app = create_app(settings)

if __name__ == "__main__":
    from l1web.web.serving import serve

    serve(settings, app)
