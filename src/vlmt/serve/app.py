"""The server: the JSON API (FastAPI) with the page (Gradio) mounted at `/`, run by uvicorn.

Uploads the page receives are checked like the API's (`vlmt.serve.middleware.UploadCheck`), go
to a temporary folder of the server's own (removed at exit) and are deleted once decoded (see
`vlmt.serve.page`); the API decodes pictures in memory. Nothing is fetched from the network:
Gradio's analytics are off and the page uses the system's fonts.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from vlmt.errors import ConfigError
from vlmt.serve.inputs import Limits, set_decoding_limits
from vlmt.serve.models import ServedModel, load_models


def _quiet_gradio() -> None:
    """Before gradio is imported: no analytics, uploads in a private temporary folder."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GRADIO_ALLOW_FLAGGING", "never")
    if "GRADIO_TEMP_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="vlmt-serve-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["GRADIO_TEMP_DIR"] = folder


def version() -> str:
    """vlmt's installed version (the package metadata; the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("vlmt")
    except PackageNotFoundError:
        return "unknown"


def create_app(served: dict[str, ServedModel], *, limits: Limits | None = None, workers: int = 2,
               page: bool = True, api_key: str | None = None, timeout: float | None = None,
               queue: int = 64, store: str | Path | None = None) -> Any:
    """The ASGI app: the API under /api, the page at / (unless `page` is False), the metrics at
    /metrics, wrapped in the access log, the key check, the body limit and the page's upload check
    (`vlmt.serve.middleware`). `store`: a feature store whose image ids requests may name
    (`store_id`) instead of sending a picture."""
    from vlmt.serve.api import BodyLimit, create_api
    from vlmt.serve.middleware import KeyCheck, Metrics, Observe, UploadCheck, key_matches

    limits = limits or Limits()
    set_decoding_limits(limits)
    features = None
    if store is not None:
        from vlmt.data.features.store import FeatureStore

        features = FeatureStore(store)
    api = create_api(served, limits=limits, workers=workers, queue=queue, timeout=timeout, store=features)
    api.state.version = version()
    pool = api.state.pool
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
        login = (lambda _user, password: key_matches(password, api_key)) if api_key else None
        api = gr.mount_gradio_app(api, build_page(served, limits=limits, workers=workers, timeout=timeout), path="/",
                                  theme=theme, ssr_mode=False, max_file_size=limits.max_upload_bytes,
                                  footer_links=[], auth=login,
                                  auth_message="This vlmt server needs its API key: type it as the password "
                                               "(any user name).")
    app: Any = UploadCheck(api, limits)
    app = BodyLimit(app, limits.max_upload_bytes + 64 * 1024)
    if api_key:
        app = KeyCheck(app, api_key)
    return Observe(app, Metrics(queue_depth=lambda: pool.waiting), key=api_key)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(paths: list[str | Path], *, host: str = "127.0.0.1", port: int = 7860, workers: int = 2,
          threads: int = 1, gallery: int = 48, page: bool = True, limits: Limits | None = None,
          api_key: str | None = None, insecure: bool = False, timeout: float | None = 60.0,
          device: str = "cpu", gallery_roots: list[Path] | None = None, store: Path | None = None) -> None:
    """Serve the models until interrupted: the port opens at once, `/api/ready` says when every
    model is loaded (`vlmt.serve.middleware.Loading`)."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("vlmt serve needs the serving extra: pip install 'vlmt[serve]'") from None
    import torch

    if not api_key and not is_loopback(host) and not insecure:
        raise ConfigError(f"--host {host}: serving beyond this machine without an API key; set one "
                          f"(--api-key or VLMT_API_KEY) or pass --insecure to serve it to anyone who can reach it")
    if not api_key and not is_loopback(host):
        print(f"WARNING: serving on {host} WITHOUT an API key (--insecure): anyone who can reach this port can "
              f"use the models", file=sys.stderr)
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to torch here; use --device cpu")
    from vlmt.serve.middleware import ACCESS_LOG, Loading

    if not ACCESS_LOG.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        ACCESS_LOG.addHandler(handler)
        ACCESS_LOG.setLevel(logging.INFO)
        ACCESS_LOG.propagate = False
    torch.set_num_threads(threads)

    def build() -> Any:
        served = load_models(paths, device=device, gallery_size=gallery, gallery_roots=gallery_roots,
                             log=lambda m: print(m, file=sys.stderr))
        app = create_app(served, limits=limits, workers=workers, page=page, api_key=api_key, timeout=timeout,
                         store=store)
        print(f"ready: {', '.join(served)} at http://{host}:{port}/", file=sys.stderr)
        return app

    def failed(e: BaseException) -> None:
        print(f"error: the models could not be loaded: {e}", file=sys.stderr)

    print(f"loading at http://{host}:{port}/ (GET /api/ready answers 200 once every model is loaded; "
          f"API: /api/docs)", file=sys.stderr)
    uvicorn.run(Loading(build, version=version(), on_error=failed), host=host, port=port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=5)  # the page's open event streams end then
