"""The web page for both jobs: `python -m jaxart.serve`, or `create_app()` for any ASGI server.

Built on Starlette (and served by uvicorn): small, typed, well kept, with a test client; the
page itself is plain HTML, JavaScript and CSS shipped in `static/` (no CDN, works offline).
"""

from jaxart.serve.app import create_app
from jaxart.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
