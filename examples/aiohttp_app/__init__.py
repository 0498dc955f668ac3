"""An aiohttp app embedding a Podium engine: ``examples.aiohttp_app.app.make_app(db_path)``."""
