"""The page: pick a model and a picture (upload one, or click a test picture of the gallery), then
ask, ground, retrieve, recognize or choose. The same functions as the JSON API answer
(`vlmt.serve.service`), and a bad input shows the API's message.

An uploaded picture is decoded by the API's `decode_image` (the same formats and limits) as soon
as it arrives, kept as pixels in the visitor's session, and its file deleted; the pictures the
page draws are removed by Gradio after `CACHE_SECONDS`. None of the page's events is a public
Gradio endpoint: programs use the JSON API (`/api/docs`).

A model call of the page that takes longer than `timeout` seconds shows the API's 504 message
and frees the page's worker slot (its thread finishes in the background, as the API's do). An
answer's warnings (words the model never saw, a picture far from the training pictures) show
under it."""

import html
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from vlmt.errors import VlmtError
from vlmt.serve import service
from vlmt.serve.inputs import InputError, Limits, check_choices, check_pixels, check_text, decode_image
from vlmt.serve.models import Picture, ServedModel

INTRO = """# vlmt
Trained multi-task vision-language models. Pick a model, then **upload a picture or click one of the
test pictures**, and ask. The same models answer JSON requests at `/api/...` (`GET /api/health`
lists them; `/api/docs` describes every call)."""
FOOTER = "JSON API: [/api/docs](/api/docs) (every call, its fields and answers) - [/api/health](/api/health)"
CACHE_SECONDS = 900  # the pictures the page drew, deleted by Gradio this long after they were made


# the methods with a tab of their own below; every other capability a task declares gets a plain tab of its inputs
# (retrieve, scoring given pictures against captions, is what the Retrieve tab does with the gallery)
DRAWN = ("answer", "ground", "rank", "retrieve", "recognize", "choose")


def within(timeout: float | None, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, or an `InputError` (504) once `timeout` seconds have passed; the call runs in a
    thread of its own, left to finish when it is late (Python cannot stop it)."""
    if timeout is None:
        return fn(*args)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=work, name="vlmt-page-call", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise InputError(f"the model did not answer within {timeout:g} s; try again, or with a smaller picture",
                         status=504)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def warnings_text(warnings: list[str]) -> str:
    """The page's line for an answer's warnings ("" for none), escaped: "<unk>" is text, not a tag."""
    return "**Read with care:** " + html.escape("; ".join(warnings), quote=False) if warnings else ""


def build_page(served: dict[str, ServedModel], *, limits: Limits, workers: int = 2,
               timeout: float | None = None) -> gr.Blocks:
    names = list(served)
    # method -> its declaration (by the first served model offering it): the tabs the served tasks ask for
    declared = {m: sm.model.capability(m) for sm in served.values() for m in reversed(sm.model.methods)}

    def tab(method: str, default: str) -> gr.Tab:
        cap = declared.get(method)
        return gr.Tab(cap.tab or default if cap else default, visible=cap is not None)

    def on_capability(method: str, name: str, pixels: Any, picked: tuple[str, int] | None, *values: Any):
        sm = service.pick_model(served, name, method)
        inputs = [i for i in sm.model.inputs(method) if i.kind not in ("image", "images")]
        given: dict[str, Any] = {}
        for item, value in zip(inputs, values):
            if item.kind == "text":
                given[item.name] = check_text(value, limits, field=item.name)
            elif item.kind == "texts":
                given[item.name] = [check_text(t, limits, field=item.name) for t in str(value or "").splitlines()
                                    if t.strip()]
            elif item.kind == "int":
                given[item.name] = int(value)
            elif item.kind == "bool":
                given[item.name] = bool(value) or None
        wants_picture = any(i.kind == "image" for i in sm.model.inputs(method))
        return service.call(sm, method, picture_of(name, pixels, picked) if wants_picture else None, given)

    def guarded(fn, outputs: int):
        """A handler whose bad input becomes the page's message (the API's words), its outputs cleared;
        the message line is its last output; past `timeout` seconds, the API's 504 message."""
        def run(*args):
            try:
                result = within(timeout, fn, *args)
            except VlmtError as e:
                return *([None] * outputs), f"**Could not do that:** {e}"
            return *(result if isinstance(result, tuple) else (result,)), ""
        run.event = getattr(fn, "__name__", "")  # type: ignore[attr-defined]  # not __name__: Gradio names routes by it
        return run

    def heads_text(name: str) -> str:
        sm = served[name]
        parts = ", ".join(f"`{n}` ({k})" for n, k in sm.model.heads.items())
        note = f"{len(sm.gallery)} test pictures below" if len(sm.gallery) else f"no gallery ({sm.gallery.source})"
        return f"**{name}** - {sm.model.info['model_type']}; heads: {parts}; can {', '.join(sm.methods)}; {note}."

    def gallery_items(name: str) -> list[tuple[np.ndarray, str]]:
        sm = served[name]
        return [(sm.gallery_pixels(i), str(im.image_id)) for i, im in enumerate(sm.gallery.images)]

    def on_upload(path: str | None):
        """The uploaded file decoded by the API's rules, then deleted: the session keeps the pixels."""
        if not path:
            return None, None, ""
        file = Path(path)
        try:
            pixels = decode_image(file.read_bytes(), limits)
            return pixels, None, f"Picture received ({pixels.shape[1]} x {pixels.shape[0]}); ask away."
        except (InputError, OSError) as e:
            return None, None, f"**Could not do that:** {e}"
        finally:
            file.unlink(missing_ok=True)
            page.upload_file_set.discard(str(file))
            if file.parent.is_dir() and not any(file.parent.iterdir()):
                file.parent.rmdir()

    def on_model(name: str):
        return heads_text(name), gallery_items(name)

    def on_gallery(name: str, evt: gr.SelectData):
        index = int(evt.index)
        pixels = served[name].gallery_pixels(index)
        return pixels, pixels, (name, index)

    def picture_of(name: str, pixels: Any, picked: tuple[str, int] | None) -> Picture:
        """The picture on the page. A gallery picture is run on the regions the feature store holds
        for it (found in this model's gallery by its file); an upload on the pixel proposals."""
        if picked is not None and pixels is not None and picked[0] in served:
            path = served[picked[0]].gallery.images[picked[1]].path
            mine = [i for i, im in enumerate(served[name].gallery.images) if im.path == path]
            if mine:
                stored = served[name].gallery_picture(mine[0])
                same = stored.pixels is not None and stored.pixels.shape == np.asarray(pixels).shape
                if same and (stored.pixels == pixels).all():
                    return stored
        model = served[name].model
        if model.preprocess.get("regions") == "feature_store" or model.extractor is None:
            raise InputError(f"model {name!r} was trained on precomputed region features and cannot find regions in "
                             f"an uploaded picture: click a test picture (its stored regions), or send the regions "
                             f"to the JSON API (regions or store_id; see /api/docs)")
        return Picture(check_pixels(pixels, limits))

    def on_ask(name, pixels, picked, question, top_k):
        sm = service.pick_model(served, name, "answer")
        picture = picture_of(name, pixels, picked)
        pixels = picture.pixels
        result = service.answer(sm, picture, check_text(question, limits, field="question"), int(top_k))
        label = {a["answer"]: a["score"] for a in result["answers"]}
        top = max(result["word_attention"], default=0.0) or 1.0  # shaded relative to the most attended word
        words = [(w, round(a / top, 3)) for w, a in zip(result["words"], result["word_attention"])]
        return label, service.attention_picture(pixels, result), words, warnings_text(result["warnings"])

    def on_ground(name, pixels, picked, sentence):
        sm = service.pick_model(served, name, "ground")
        picture = picture_of(name, pixels, picked)
        pixels = picture.pixels
        result = service.ground(sm, picture, check_text(sentence, limits, field="sentence"))
        scale = service.enlarge(pixels, 384).shape[0] / pixels.shape[0]
        boxes = [(tuple(int(v * scale) for v in p["box"]), p["phrase"]) for p in result["phrases"]]
        rows = [[p["phrase"], ", ".join(f"{v:g}" for v in p["box"]), p["score"]] for p in result["phrases"]]
        return (service.enlarge(pixels, 384), boxes), rows

    def on_captions(name, pixels, picked, top_k):
        sm = service.pick_model(served, name, "retrieve")
        result = service.retrieve_captions(sm, picture_of(name, pixels, picked), int(top_k))
        return [[c["caption"], c["image_id"], c["score"], c["stage"]] for c in result["captions"]]

    def on_images(name, caption, top_k):
        sm = service.pick_model(served, name, "retrieve")
        result = service.retrieve_images(sm, check_text(caption, limits, field="caption"), int(top_k))
        return [(sm.gallery_pixels(r["index"]), f"{r['image_id']}: {r['score']:.3f}") for r in result["images"]]

    def on_recognize(name, pixels, picked, top_k):
        sm = service.pick_model(served, name, "recognize")
        picture = picture_of(name, pixels, picked)
        pixels = picture.pixels
        result = service.recognize(sm, picture, int(top_k))
        scale = service.enlarge(pixels, 384).shape[0] / pixels.shape[0]
        boxes = [(tuple(int(v * scale) for v in r["box"]),
                  f"{r['attributes'][0]['label']} {r['objects'][0]['label']}")
                 for r in service.distinct_regions(result["regions"])]
        rows = [[", ".join(f"{v:g}" for v in r["box"]),
                 ", ".join(f"{o['label']} {o['score']:.2f}" for o in r["objects"]),
                 ", ".join(f"{a['label']} {a['score']:.2f}" for a in r["attributes"])] for r in result["regions"]]
        return (service.enlarge(pixels, 384), boxes), rows

    def on_choose(name, pixels, picked, question, choices, zero_shot):
        sm = service.pick_model(served, name, "choose")
        result = service.choose(sm, picture_of(name, pixels, picked), check_text(question, limits, field="question"),
                                check_choices(choices, limits), True if zero_shot else None)
        scores = np.array([a["score"] for a in result["answers"]])
        shares = np.exp(scores - scores.max())
        shares /= shares.sum()
        return {a["answer"]: float(p) for a, p in zip(result["answers"], shares)}, warnings_text(result["warnings"])

    with gr.Blocks(title="vlmt", delete_cache=(CACHE_SECONDS // 3, CACHE_SECONDS)) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            model = gr.Dropdown(names, value=names[0], label="model", elem_id="model", scale=1)
            heads = gr.Markdown(heads_text(names[0]), elem_id="heads")
        message = gr.Markdown("", elem_id="message")
        picked = gr.State(None)  # (model, gallery index) of the picture shown, when it came from the gallery
        shown = gr.State(None)  # the pixels of the picture shown (an upload's file is deleted once decoded)
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="filepath", label="picture", sources=["upload", "clipboard"], height=320,
                                 format="png", elem_id="picture")
                gallery = gr.Gallery(gallery_items(names[0]), label="test pictures (click one)", columns=6,
                                     height=260, allow_preview=False, elem_id="gallery")
            with gr.Column(scale=1):
                with tab("answer", "Ask (VQA)"):
                    question = gr.Textbox(label="question", placeholder="what color is the square?",
                                          elem_id="question")
                    top_k = gr.Slider(1, 20, value=5, step=1, label="answers to show")
                    ask = gr.Button("Ask", variant="primary", elem_id="ask")
                    answers = gr.Label(label="answers (each one's sigmoid score)", elem_id="answers")
                    attention = gr.Image(label="where the model looked (region attention)", interactive=False,
                                         elem_id="attention", height=300)
                    words = gr.HighlightedText(label="word attention (relative to the most attended word)",
                                               elem_id="words")
                    answer_warnings = gr.Markdown("", elem_id="answer-warnings")
                with tab("ground", "Ground"):
                    sentence = gr.Textbox(label="sentence", placeholder="the red square left of the blue circle")
                    ground = gr.Button("Ground", variant="primary", elem_id="ground")
                    grounded = gr.AnnotatedImage(label="a box per phrase", elem_id="grounded", height=360)
                    phrase_rows = gr.Dataframe(headers=["phrase", "box", "score"], interactive=False)
                with tab("rank", "Retrieve"):
                    find_captions = gr.Button("Captions for this picture", elem_id="captions-for-picture")
                    caption_rows = gr.Dataframe(headers=["caption", "image", "score", "stage"], interactive=False)
                    caption = gr.Textbox(label="caption", placeholder="a red square above a circle")
                    find_images = gr.Button("Pictures for this caption", elem_id="pictures-for-caption")
                    found_images = gr.Gallery(label="best pictures", columns=4, allow_preview=False)
                with tab("recognize", "Recognize (SVLR)"):
                    recognize = gr.Button("Recognize", variant="primary", elem_id="recognize")
                    recognized = gr.AnnotatedImage(label="attribute + object of each distinct region", height=360)
                    region_rows = gr.Dataframe(headers=["box", "objects", "attributes"], interactive=False)
                with tab("choose", "Multiple choice (SVLR)"):
                    mc_question = gr.Textbox(label="question", placeholder="what color is the square?")
                    mc_choices = gr.Textbox(label="choices (one per line or comma-separated)",
                                            placeholder="red, blue, green")
                    zero_shot = gr.Checkbox(label="zero-shot (Eq. 9: region-word scores only)")
                    choose = gr.Button("Choose", variant="primary", elem_id="choose")
                    chosen = gr.Label(label="choices ranked")
                    choice_warnings = gr.Markdown("", elem_id="choice-warnings")
                generic = []  # (method, its input fields, its button, its answer) of every other capability
                for method, cap in declared.items():
                    if method in DRAWN:
                        continue
                    with gr.Tab(cap.tab or method):
                        gr.Markdown(f"{cap.summary}; returns {cap.returns}")
                        fields: list[Any] = []
                        for item in cap.inputs:
                            if item.kind == "text":
                                fields.append(gr.Textbox(label=item.name, info=item.help))
                            elif item.kind == "texts":
                                fields.append(gr.Textbox(label=f"{item.name} (one per line)", info=item.help, lines=3))
                            elif item.kind == "int":
                                fields.append(gr.Number(value=item.default, precision=0, label=item.name))
                            elif item.kind == "bool":
                                fields.append(gr.Checkbox(label=item.name, info=item.help))
                        generic.append((method, fields, gr.Button(method, variant="primary", elem_id=method),
                                        gr.JSON(label="answer", elem_id=f"{method}-answer")))
        gr.Markdown(FOOTER, elem_id="footer")  # the page's events below are private: not a second API
        model.change(on_model, inputs=model, outputs=[heads, gallery], api_visibility="private")
        gallery.select(on_gallery, inputs=model, outputs=[image, shown, picked], api_visibility="private")
        image.upload(on_upload, inputs=image, outputs=[shown, picked, message], api_visibility="private")
        image.clear(lambda: (None, None), outputs=[shown, picked], api_visibility="private")

        def wire(trigger, fn, inputs, outputs):
            trigger(guarded(fn, len(outputs)), inputs=inputs, outputs=[*outputs, message], api_visibility="private")

        asked = [answers, attention, words, answer_warnings]
        wire(ask.click, on_ask, [model, shown, picked, question, top_k], asked)
        wire(question.submit, on_ask, [model, shown, picked, question, top_k], asked)
        wire(ground.click, on_ground, [model, shown, picked, sentence], [grounded, phrase_rows])
        wire(find_captions.click, on_captions, [model, shown, picked, top_k], [caption_rows])
        wire(find_images.click, on_images, [model, caption, top_k], [found_images])
        wire(recognize.click, on_recognize, [model, shown, picked, top_k], [recognized, region_rows])
        wire(choose.click, on_choose, [model, shown, picked, mc_question, mc_choices, zero_shot],
             [chosen, choice_warnings])
        for method, fields, button, answer in generic:
            wire(button.click, lambda *args, m=method: on_capability(m, *args), [model, shown, picked, *fields],
                 [answer])
    page.queue(default_concurrency_limit=workers, max_size=64)
    return page
