"""A FastAPI app embedding a Podium engine: ``examples.fastapi_app.app.make_app(db_path)``."""
