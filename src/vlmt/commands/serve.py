"""`vlmt serve MODEL [MODEL ...] [--host 127.0.0.1] [--port 7860]`: trained models behind a page
(Gradio) and a JSON API (FastAPI) on one server. MODEL is an exported model folder, a run folder
or a demo folder (`vlmt serve runs/demo` serves the demo's models with the world's test pictures).
Needs the serving extra: `pip install 'vlmt[serve]'`.

Beyond this machine (`--host 0.0.0.0`) it needs an API key (`--api-key` or `VLMT_API_KEY`: the
API takes it as `Authorization: Bearer KEY`, the page as its login password) or `--insecure`.
docs/serving.md has the limits, the metrics and how to put it behind a reverse proxy.
"""

from __future__ import annotations

import argparse
import os

EXAMPLES = """\
  vlmt serve runs/demo                       # the demo's models; open http://127.0.0.1:7860/
  vlmt serve models/tiny runs/svlr --port 8000
  vlmt serve models/easy_vqa --no-page --workers 4   # the JSON API alone
  VLMT_API_KEY=secret vlmt serve models/coco --host 0.0.0.0 --gallery-root ~/data/coco --device cuda
  curl -F image=@shape.png -F question="what color is the shape?" http://127.0.0.1:7860/api/answer"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="model folder, run folder or demo folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--workers", type=int, default=2, help="model calls at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model call (default 1)")
    parser.add_argument("--gallery", type=int, default=48, help="test pictures per model to pick from (default 48)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="largest picture upload (default 20 MB)")
    parser.add_argument("--no-page", action="store_true", help="serve the JSON API only (no Gradio needed)")
    parser.add_argument("--api-key", default=None,
                        help="a key every API call must send as 'Authorization: Bearer KEY' and the page asks for "
                             "(default: $VLMT_API_KEY; none: anyone who can reach the port may call)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow --host beyond this machine without an API key")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a model call may take before the request is answered 504 (default 60)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the models run (default cpu)")
    parser.add_argument("--gallery-root", action="append", default=[], metavar="FOLDER",
                        help="a folder the models' test pictures may come from (repeatable; vlmt's cache of "
                             "worlds is always allowed)")
    parser.add_argument("--store", metavar="FOLDER", default=None,
                        help="a feature store (`vlmt data convert`) whose image ids requests may name (store_id) "
                             "instead of a picture: for a model trained on precomputed region features")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vlmt.errors import ConfigError
    from vlmt.serve.app import serve
    from vlmt.serve.inputs import Limits

    if args.workers < 1 or args.threads < 1 or args.gallery < 0 or args.max_upload_mb <= 0 or args.timeout <= 0:
        raise ConfigError("--workers and --threads must be >= 1, --gallery >= 0, --max-upload-mb and --timeout > 0")
    key = args.api_key if args.api_key is not None else os.environ.get("VLMT_API_KEY")
    if key is not None and len(key.strip()) < 8:
        raise ConfigError("--api-key / VLMT_API_KEY: use a key of 8 characters or more")
    store = Path(args.store).expanduser() if args.store else None
    if store is not None and not store.is_dir():
        raise ConfigError(f"--store {store}: no such folder")
    roots = [Path(r).expanduser() for r in args.gallery_root]
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"--gallery-root {root}: no such folder")
    serve(args.models, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
          gallery=args.gallery, page=not args.no_page, limits=Limits(max_upload_bytes=int(args.max_upload_mb * 2**20)),
          api_key=key.strip() if key else None, insecure=args.insecure, timeout=args.timeout, device=args.device,
          gallery_roots=roots, store=store)
    return 0
