"""The JSON API: `GET /api/health`, and `POST /api/answer`, `/api/ground`, `/api/retrieve`,
`/api/recognize`, `/api/choose` with multipart forms (`image` a picture file, or `gallery` the
index of a gallery picture; the text fields of each method). Every answer is JSON; a request that
cannot be served gets a 4xx status and `{"error": "..."}` saying what was wrong.

Model calls run in a bounded pool of worker threads (`workers`), off the event loop, so the server
keeps accepting and queueing requests while models compute; more than `queue` requests waiting
are answered 503, and a call that takes longer than `timeout` seconds is answered 504 (its
thread is left to finish: Python cannot stop it, and its worker slot is freed).

`GET /api/health` says the server is alive (version, models and the checksums of their weights);
`GET /api/ready` answers 200 once every model is loaded (503 before: see `vlmt.serve.middleware`).
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlmt.errors import VlmtError
from vlmt.serve import service
from vlmt.serve.inputs import (
    InputError,
    Limits,
    check_choices,
    check_text,
    check_top_k,
    decode_image,
    decode_regions_tsv,
)
from vlmt.serve.models import Picture, ServedModel
from vlmt.serve.schema import GALLERY, MODEL, REGIONS, STORE_ID, form_schema, responses
from vlmt.tasks.capabilities import IMAGE, Input, inputs_of, integer, text

# a picture is an `image` file, a `gallery` index, a `regions` file of bottom-up TSV lines or a `store_id`
# of the server's feature store (`vlmt serve --store`)
PICTURE_FIELDS = ("image", "gallery", "regions", "store_id")
FORM_FIELDS = {"answer": (*PICTURE_FIELDS, "question", "top_k", "model"),
               "ground": (*PICTURE_FIELDS, "sentence", "model"),
               "retrieve": (*PICTURE_FIELDS, "caption", "top_k", "k", "model"),
               "recognize": (*PICTURE_FIELDS, "top_k", "model"),
               "choose": (*PICTURE_FIELDS, "question", "choices", "zero_shot", "model")}
# the routes that take several pictures in one request (each picture field repeated): those whose Python
# call takes a list of pictures; retrieve ranks the gallery for one picture (`rank` takes one query)
BATCHED = ("answer", "ground", "recognize", "choose")


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 before it is read whole."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # every route: the API's and the page's
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(send, self.limit)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise InputError(f"the request body is over {self.limit:,} bytes", status=413)
            return message

        await self.app(scope, counted, send)


async def _too_large(send: Send, limit: int) -> None:
    response = JSONResponse({"error": f"the request body is over {limit:,} bytes; upload a smaller picture"},
                            status_code=413)
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Pool:
    """At most `workers` model calls at once and `queue` waiting; the rest are answered 503."""

    def __init__(self, workers: int, queue: int, timeout: float | None = None):
        self.limiter = anyio.CapacityLimiter(workers)
        self.queue = queue
        self.timeout = timeout
        self.waiting = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.waiting >= self.queue:
            raise InputError(f"the server is busy ({self.waiting} requests waiting); try again shortly", status=503)
        self.waiting += 1
        try:
            if self.timeout is None:
                return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)
            with anyio.fail_after(self.timeout):
                return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter, abandon_on_cancel=True)
        except TimeoutError:
            raise InputError(f"the model did not answer within {self.timeout:g} s; try again, or with a smaller "
                             f"picture", status=504) from None
        finally:
            self.waiting -= 1


def create_api(served: dict[str, ServedModel], *, limits: Limits, workers: int = 2, queue: int = 64,
               timeout: float | None = None, store: Any = None) -> FastAPI:
    """The JSON API over the served models; `store` (a `FeatureStore`, or None) is the feature store
    whose image ids a request may name (`store_id`) instead of sending a picture."""
    app = FastAPI(title="vlmt", description="Trained vlmt models: VQA, grounding, retrieval, SVLR recognition "
                  "and multiple choice", docs_url="/api/docs", openapi_url="/api/openapi.json")
    pool = Pool(workers, queue, timeout)
    app.state.pool = pool

    def declared_inputs(method: str) -> tuple[Input, ...]:
        return inputs_of([o for sm in served.values() for o in sm.model.offers(method)])

    # the retrieve route ranks the gallery (the Python call `rank`): its fields are its own
    retrieve_fields = (IMAGE, GALLERY, REGIONS, STORE_ID,
                       text("caption", "instead of a picture: a caption to rank the gallery for", required=False),
                       integer("top_k", 5, "how many to list"),
                       integer("k", 20, "candidates the full model re-scores when the model has a shortlist head"),
                       MODEL)

    def documented(method: str, *, repeated: tuple[str, ...] = ()) -> dict[str, Any]:
        """The OpenAPI description of a route (`vlmt.serve.schema`): its form fields from the inputs
        its capability declares, its answer's shape, and whether a served model can answer it."""
        if method == "retrieve":
            inputs: tuple[Input, ...] = retrieve_fields
            declared_by = "rank"
        else:
            own = [i for i in declared_inputs(method) if i.name in FORM_FIELDS[method]]
            pictures = [i for i in own if i.kind == "image"]
            inputs = (*pictures, *((GALLERY, REGIONS, STORE_ID) if pictures else ()),
                      *(i for i in own if i.kind != "image"), MODEL)
            declared_by = method
        caps = [o.capability for sm in served.values() for o in sm.model.offers(declared_by)]
        summary = caps[0].summary if caps else f"{method} (no served model answers it)"
        return {"openapi_extra": form_schema(inputs, limits, repeated=repeated),
                "responses": responses(method, summary), "summary": summary, "include_in_schema": bool(caps)}
    app.state.version = "unknown"

    @app.exception_handler(InputError)
    async def input_error(_: Request, e: InputError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(VlmtError)
    async def vlmt_error(_: Request, e: VlmtError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no such endpoint: {request.method} {request.url.path} (see GET /api/health)",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(e.status_code, str(e.detail))
        return JSONResponse({"error": message}, status_code=e.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, e: Exception) -> JSONResponse:  # a bug: logged, answered without a trace
        traceback.print_exception(e, file=sys.stderr)
        return JSONResponse({"error": f"internal error ({type(e).__name__}); the server log has the details"},
                            status_code=500)

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        """Alive: vlmt's version, the models served (their heads, the methods they support and the
        sha256 of their weights) and the server's limits."""
        return {"status": "ok", "version": app.state.version, "ready": True,
                "models": {name: m.describe() for name, m in served.items()},
                "feature_store": {"images": len(store)} if store is not None else None,
                "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
                           "max_text_chars": limits.max_text_chars, "timeout_s": timeout},
                "workers": workers, "waiting": pool.waiting}

    @app.get("/api/ready")
    async def ready() -> dict[str, Any]:
        """200 once every model is loaded (this app exists only then; a server still loading answers 503)."""
        return {"ready": True, "models": list(served)}

    async def read_form(request: Request, method: str, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
        fields = fields or FORM_FIELDS[method]
        kind = request.headers.get("content-type", "")
        if not kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise InputError(f"send a multipart form (fields: {', '.join(fields)}), "
                             f"not {kind or 'no content type'}", status=415)
        try:
            form = await request.form(max_files=limits.max_pictures + 1,
                                      max_fields=len(fields) + limits.max_batch + 60,
                                      max_part_size=limits.max_text_chars * 8 + 1024)
        except InputError:
            raise
        except Exception as e:  # malformed multipart bodies
            if str(getattr(e, "detail", e)).startswith("Too many files"):  # Starlette's max_files, as a 400
                raise InputError(f"more than {limits.max_pictures} picture files (image, regions) in one request; "
                                 f"the limit is {limits.max_pictures} pictures", status=413) from None
            raise InputError(f"the form could not be read: {e}") from None
        out: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key in ("image", "regions"):
                if not isinstance(value, UploadFile):
                    raise InputError(f"{key}: expected a file upload (multipart), got a text field")
                out.setdefault(key, []).append(await value.read(limits.max_upload_bytes + 1))
            elif key in ("choices", "gallery", "store_id"):
                out.setdefault(key, []).append(str(value))
            elif key in out and key != "model":  # a repeated field: a list of texts
                out[key] = [*(out[key] if isinstance(out[key], list) else [out[key]]), str(value)]
            elif isinstance(value, UploadFile):
                raise InputError(f"{key}: expected a text field, got a file")
            else:
                out[key] = str(value)
        unknown = sorted(set(out) - set(fields))
        if unknown:
            raise InputError(f"unknown field(s) {', '.join(unknown)}; {method} takes {', '.join(fields)}")
        return out

    def pictures(form: dict[str, Any], sm: ServedModel) -> list[Picture]:
        """The pictures of a request: its `image` files, then its `gallery` indices, in their order."""
        files, indices = form.get("image") or [], form.get("gallery") or []
        tsv_files, stored = form.get("regions") or [], form.get("store_id") or []
        if not files and not indices and not tsv_files and not stored:
            return [Picture(decode_image(None, limits))]  # the missing-field error
        if len(files) + len(indices) + len(stored) > limits.max_pictures:
            raise too_many({"image": len(files), "gallery": len(indices), "store_id": len(stored)})
        out = [Picture(decode_image(data, limits, field=numbered("image", i, files)))
               for i, data in enumerate(files)]
        for i, index in enumerate(indices):
            try:
                out.append(sm.gallery_picture(int(index)))
            except (ValueError, IndexError):
                raise InputError(f"{numbered('gallery', i, indices)}: expected a picture index from 0 to "
                                 f"{len(sm.gallery) - 1} of model {sm.name!r}, got {index[:20]!r}") from None
        if files and (sm.model.preprocess.get("regions") == "feature_store" or sm.model.extractor is None):
            raise InputError(f"image: model {sm.name!r} was trained on precomputed region features and cannot find "
                             f"regions in a picture; send them instead: regions (a file of bottom-up TSV lines, "
                             f"features of width {sm.model.feature_dim}) or store_id (an image id of the server's "
                             f"feature store)")
        for i, data in enumerate(tsv_files):
            out.extend(Picture(None, f, b, source="bottom-up TSV")
                       for f, b in decode_regions_tsv(data, limits, field=numbered("regions", i, tsv_files)))
        for i, text_id in enumerate(stored):
            out.append(stored_picture(text_id, numbered("store_id", i, stored)))
        if len(out) > limits.max_pictures:
            raise too_many({"image": len(files), "gallery": len(indices), "regions lines": len(out) - len(files)
                            - len(indices) - len(stored), "store_id": len(stored)})
        return out

    def too_many(sent: dict[str, int]) -> InputError:
        """The 413 of a request over the picture limit, naming the picture fields sent and how many of each."""
        fields = ", ".join(f"{field} x {n}" for field, n in sent.items() if n)
        return InputError(f"{sum(sent.values())} pictures in one request ({fields}); the limit is "
                          f"{limits.max_pictures} pictures (image, gallery, regions lines and store_id together)",
                          status=413)

    def numbered(field: str, i: int, values: list[Any]) -> str:
        """A picture field as an error names it: with its position (from 1) when the field was sent several times."""
        return f"{field} {i + 1}" if len(values) > 1 else field

    def stored_picture(text_id: str, field: str = "store_id") -> Picture:
        """The regions the server's feature store holds for an image id (never its path: the client
        names an id, the operator the store)."""
        if store is None:
            raise InputError(f"{field}: this server has no feature store (the operator names one with "
                             "`vlmt serve --store FOLDER`); send the regions as a bottom-up TSV line (regions)")
        try:
            record = store.read(int(text_id))
        except ValueError:
            raise InputError(f"{field}: expected an image id (a whole number), got {text_id[:20]!r}") from None
        except KeyError:
            raise InputError(f"{field}: the server's feature store has no image {int(text_id)}", status=404) from None
        return Picture(None, record.features, record.boxes, source="feature store")

    def picture(form: dict[str, Any], sm: ServedModel) -> Picture:
        """The one picture of a request to a route that takes one."""
        chosen = pictures(form, sm)
        if len(chosen) > 1:
            raise InputError(f"{len(chosen)} pictures sent (image and gallery fields); this call takes one "
                             f"(several pictures: POST " + ", ".join(f"/api/{m}" for m in BATCHED) + ")")
        return chosen[0]

    def flag(value: str | None, field: str = "zero_shot") -> bool | None:
        if value is None or not value.strip():
            return None  # the model's default scorer
        text = value.strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise InputError(f"{field}: expected true or false, got {text[:20]!r}")
        return text in ("true", "1", "yes")

    @app.post("/api/answer", **documented("answer", repeated=(*PICTURE_FIELDS, "question")))
    async def answer(request: Request) -> Any:
        """Top answers of the VQA head, with the region and word attention behind them. Several
        pictures (`image` and `gallery` fields, repeated) and several questions (`question`, repeated):
        every question of every picture, in one pass of the model, as `{"model", "results"}`."""
        form = await read_form(request, "answer")
        sm = service.pick_model(served, form.get("model"), "answer")
        asked = form.get("question")
        questions = [check_text(q, limits, field="question") for q in (asked if isinstance(asked, list) else [asked])]
        top_k = check_top_k(form.get("top_k"), limits)
        chosen = pictures(form, sm)
        if len(chosen) * len(questions) > limits.max_batch:
            raise InputError(f"{len(chosen)} pictures x {len(questions)} questions = {len(chosen) * len(questions)} "
                             f"answers in one request; the limit is {limits.max_batch}", status=413)
        if len(chosen) == 1 and len(questions) == 1:
            return await pool.run(service.answer, sm, chosen[0], questions[0], top_k)
        return await pool.run(service.answer_batch, sm, chosen, questions, top_k)

    @app.post("/api/ground", **documented("ground", repeated=PICTURE_FIELDS))
    async def ground(request: Request) -> Any:
        """A box per noun phrase of the sentence. Several pictures (picture fields repeated): the
        sentence grounded in each (their regions found in one pass), as `{"model", "results"}`."""
        form = await read_form(request, "ground")
        sm = service.pick_model(served, form.get("model"), "ground")
        sentence = check_text(form.get("sentence"), limits, field="sentence")
        chosen = pictures(form, sm)
        if len(chosen) == 1:
            return await pool.run(service.ground, sm, chosen[0], sentence)
        return await pool.run(service.ground_batch, sm, chosen, sentence)

    @app.post("/api/retrieve", **documented("retrieve"))
    async def retrieve(request: Request) -> Any:
        """With `image` (or `gallery`): the gallery's captions ranked; with `caption`: its pictures.
        `k`: candidates the full model re-scores when the model has a shortlist head (default 20)."""
        form = await read_form(request, "retrieve")
        sm = service.pick_model(served, form.get("model"), "retrieve")
        top_k = check_top_k(form.get("top_k"), limits)
        k = check_top_k(form.get("k"), Limits(max_top_k=10_000), default=20)
        has_picture = any(f in form for f in PICTURE_FIELDS)
        if has_picture == ("caption" in form):
            raise InputError("retrieve: send either a picture (image, gallery, regions or store_id) to rank captions, "
                             "or a caption to rank pictures")
        if "caption" in form:
            caption = check_text(form["caption"], limits, field="caption")
            return await pool.run(lambda: service.retrieve_images(sm, caption, top_k, k=k))
        chosen = picture(form, sm)
        return await pool.run(lambda: service.retrieve_captions(sm, chosen, top_k, k=k))

    @app.post("/api/recognize", **documented("recognize", repeated=PICTURE_FIELDS))
    async def recognize(request: Request) -> Any:
        """Objects and attributes of every region (SVLR). Several pictures (picture fields repeated):
        each picture's (their regions found in one pass), as `{"model", "results"}`."""
        form = await read_form(request, "recognize")
        sm = service.pick_model(served, form.get("model"), "recognize")
        top_k = check_top_k(form.get("top_k"), limits, default=3)
        chosen = pictures(form, sm)
        if len(chosen) == 1:
            return await pool.run(service.recognize, sm, chosen[0], top_k)
        return await pool.run(service.recognize_batch, sm, chosen, top_k)

    @app.post("/api/choose", **documented("choose", repeated=PICTURE_FIELDS))
    async def choose(request: Request) -> Any:
        """The choices ranked: the multiple-choice head (`zero_shot=false`), the zero-shot score
        (`zero_shot=true`), or, without the field, the model's default (its multiple-choice head when it
        has one); the answer's `scorer` says which. Several pictures (picture fields repeated): the
        question asked of each (their regions found in one pass), as `{"model", "results"}`."""
        form = await read_form(request, "choose")
        sm = service.pick_model(served, form.get("model"), "choose")
        question = check_text(form.get("question"), limits, field="question")
        choices = check_choices(form.get("choices"), limits)
        zero_shot = flag(form.get("zero_shot"))
        chosen = pictures(form, sm)
        if len(chosen) == 1:
            return await pool.run(service.choose, sm, chosen[0], question, choices, zero_shot)
        return await pool.run(service.choose_batch, sm, chosen, question, choices, zero_shot)

    def capability_route(method: str, inputs: tuple[Input, ...]) -> Callable[[Request], Any]:
        fields = tuple(i.name for i in inputs if i.kind not in ("image", "images")) + (*PICTURE_FIELDS, "model")

        async def route(request: Request) -> Any:
            form = await read_form(request, method, fields)
            sm = service.pick_model(served, form.get("model"), method)
            values: dict[str, Any] = {}
            for item in inputs:
                raw = form.get(item.name)
                if item.kind in ("image", "images"):
                    continue
                if raw is None:
                    if item.required:
                        raise InputError(f"missing field {item.name!r}: {item.help}")
                    continue
                if item.kind == "text":
                    values[item.name] = check_text(raw, limits, field=item.name)
                elif item.kind == "texts":
                    values[item.name] = [check_text(t, limits, field=item.name) for t in
                                         (raw if isinstance(raw, list) else str(raw).splitlines()) if t.strip()]
                elif item.kind == "int":
                    values[item.name] = check_top_k(raw, Limits(max_top_k=10_000), default=item.default)
                elif item.kind == "bool":
                    values[item.name] = flag(raw, field=item.name)
            wants_picture = any(i.kind == "image" for i in inputs)
            chosen = picture(form, sm) if wants_picture else None
            return await pool.run(service.call, sm, method, chosen, values)

        route.__doc__ = "; ".join(o.capability.summary for m in served.values() for o in m.model.offers(method))
        return route

    # every other capability a served model's tasks declare (a plugin's task, say): one route each
    offered = dict.fromkeys(m for sm in served.values() for m in sm.methods)
    declared = {method: next(m for m in served.values() if method in m.methods).model.inputs(method)
                for method in offered if method not in FORM_FIELDS}
    for method, inputs in declared.items():
        caps = [o.capability for sm in served.values() for o in sm.model.offers(method)]
        fields = tuple(i for i in inputs if i.kind not in ("image", "images"))
        if any(i.kind == "image" for i in inputs):
            fields = (IMAGE, GALLERY, REGIONS, STORE_ID, *fields)
        app.add_api_route(f"/api/{method}", capability_route(method, inputs), methods=["POST"],
                          summary=f"{method} (declared by a task): {caps[0].summary}",
                          openapi_extra=form_schema((*fields, MODEL), limits),
                          responses=responses(method, caps[0].summary, caps[0].returns))

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                   include_in_schema=False)
    async def elsewhere(request: Request, rest: str) -> JSONResponse:  # not the page's 404 for /api/*
        if rest in FORM_FIELDS:
            return JSONResponse({"error": f"{request.method} is not allowed on /api/{rest}; send a POST with a "
                                          f"multipart form ({', '.join(FORM_FIELDS[rest])})"}, status_code=405)
        return JSONResponse({"error": f"no such endpoint: /api/{rest}; endpoints: GET /api/health, /api/ready, POST "
                                      + ", ".join(f"/api/{m}" for m in FORM_FIELDS)}, status_code=404)

    return app
