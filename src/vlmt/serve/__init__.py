"""`vlmt serve`: trained models behind a page for people (Gradio) and a JSON API for programs
(FastAPI), one server. `inputs` checks what clients send, `gallery` finds a model's test pictures,
`service` turns a request into a result (shared by the page and the API), `api` and `page` are
the two fronts, `app` puts them together.
"""
