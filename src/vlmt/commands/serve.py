"""`vlmt serve MODEL [MODEL ...] [--host 127.0.0.1] [--port 7860]`: trained models behind a page
(Gradio) and a JSON API (FastAPI) on one server. MODEL is an exported model folder, a run folder
or a demo folder (`vlmt serve runs/demo` serves the demo's models with the world's test pictures).
Needs the serving extra: `pip install 'vlmt[serve]'`.
"""

from __future__ import annotations

import argparse

EXAMPLES = """\
  vlmt serve runs/demo                       # the demo's models; open http://127.0.0.1:7860/
  vlmt serve models/tiny runs/svlr --port 8000
  vlmt serve models/easy_vqa --no-page --workers 4   # the JSON API alone
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


def run(args: argparse.Namespace) -> int:
    from vlmt.errors import ConfigError
    from vlmt.serve.app import serve
    from vlmt.serve.inputs import Limits

    if args.workers < 1 or args.threads < 1 or args.gallery < 0 or args.max_upload_mb <= 0:
        raise ConfigError("--workers and --threads must be >= 1, --gallery >= 0, --max-upload-mb > 0")
    serve(args.models, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
          gallery=args.gallery, page=not args.no_page, limits=Limits(max_upload_bytes=int(args.max_upload_mb * 2**20)))
    return 0
