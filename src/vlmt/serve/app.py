"""The server: the JSON API (FastAPI) with the page (Gradio) mounted at `/`, run by uvicorn.

Uploads the page receives go to a temporary folder of the server's own (removed at exit); the API
decodes pictures in memory. Nothing is fetched from the network: Gradio's analytics are off and
the page uses the system's fonts.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from vlmt.errors import ConfigError
from vlmt.serve.inputs import Limits
from vlmt.serve.models import ServedModel, load_models


def _quiet_gradio() -> None:
    """Before gradio is imported: no analytics, uploads in a private temporary folder."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GRADIO_ALLOW_FLAGGING", "never")
    if "GRADIO_TEMP_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="vlmt-serve-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["GRADIO_TEMP_DIR"] = folder


def create_app(served: dict[str, ServedModel], *, limits: Limits | None = None, workers: int = 2,
               page: bool = True) -> Any:
    """The ASGI app: the API under /api, the page at / (unless `page` is False)."""
    from vlmt.serve.api import BodyLimit, create_api

    limits = limits or Limits()
    api = create_api(served, limits=limits, workers=workers)
    if page:
        _quiet_gradio()
        try:
            import gradio as gr
        except ImportError:
            raise ConfigError("the page needs the serving extra: pip install 'vlmt[serve]' "
                              "(or serve the JSON API alone with --no-page)") from None
        from vlmt.serve.page import build_page

        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                  font_mono=["ui-monospace", "monospace"])
        api = gr.mount_gradio_app(api, build_page(served, limits=limits, workers=workers), path="/",
                                  theme=theme, ssr_mode=False, max_file_size=limits.max_upload_bytes,
                                  footer_links=["api"])
    return BodyLimit(api, limits.max_upload_bytes + 64 * 1024)


def serve(paths: list[str | Path], *, host: str = "127.0.0.1", port: int = 7860, workers: int = 2,
          threads: int = 1, gallery: int = 48, page: bool = True, limits: Limits | None = None) -> None:
    """Load the models and serve them until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("vlmt serve needs the serving extra: pip install 'vlmt[serve]'") from None
    import torch

    torch.set_num_threads(threads)
    served = load_models(paths, gallery_size=gallery, log=lambda m: print(m, file=sys.stderr))
    app = create_app(served, limits=limits, workers=workers, page=page)
    print(f"serving {', '.join(served)} at http://{host}:{port}/ (API: /api/health, /api/docs)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
