"""What a trained task can do for a user: its capabilities.

A task declares, in its own file, the calls a trained model gains from it, by decorating the
method that runs the call:

    class VQATask(EncoderTask):
        @capability("answer", summary="the top answers of the VQA head", inputs=(IMAGE, text("question"),
                    integer("top_k", 5)), returns="...", example='model.answer("x.png", "what color?")',
                    result=lambda full: full["answers"], tab="Ask (VQA)")
        def answer(self, runtime, image=None, question="", *, top_k=5, regions=None, boxes=None) -> dict: ...

The decorated method takes the loaded model (a `Runtime`: the encoder, its device and the regions of
a picture) and the call's inputs, and returns the *full* result, a dict with everything behind the
answer (attention maps, boxes, the words the model did not know). Everything that serves a trained
model asks the tasks through `capabilities_of`, never a list of task names:

- `vlmt.load(...)`: `model.answer(...)` is the `result` of the full dict, `model.details("answer", ...)`
  the dict itself;
- `vlmt export`: the model card's examples;
- `vlmt serve`: one route per method (`POST /api/<method>`) with the declared inputs, and the page's tabs.

A task may also draw its pictures (`vlmt visualize`) with a method

    def pictures(self, model, split, *, count, out, peers) -> list[Picture]

that writes PNGs into the folder `out` for `count` examples of `split`; `peers` are the run's other
tasks, so one picture can show several decoders side by side (Fig. 2 of the hierarchical paper).

A capability whose calls can share a pass of the model names the task's method that runs a batch
(`batch="answer_batch"`); `vlmt.load(...).details_many` uses it, and calls one by one otherwise.

Several tasks may offer one method (SVLR's multiple-choice head and the zero-shot scorer both
`choose`): the lowest `priority` answers, and `when` names inputs that pick one explicitly
(`choose(..., zero_shot=True)`). The result says which answered (`variant`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Protocol, TypeVar

import numpy as np
import torch

InputKind = Literal["image", "images", "text", "texts", "int", "bool"]


@dataclass(frozen=True)
class Input:
    """One input of a capability: its name (the keyword of the Python call and the form field of
    the route), its kind, whether it must be given, its default and a line of help."""

    name: str
    kind: InputKind
    help: str = ""
    default: Any = None
    required: bool = False


IMAGE = Input("image", "image", "the picture: a path, a PIL image or an H x W x 3 uint8 array (or regions=, boxes=)",
              required=True)


def text(name: str, help: str = "", *, required: bool = True) -> Input:
    return Input(name, "text", help, default="", required=required)


def texts(name: str, help: str = "", *, required: bool = True) -> Input:
    return Input(name, "texts", help, default=(), required=required)


def integer(name: str, default: int, help: str = "") -> Input:
    return Input(name, "int", help, default=default)


def flag(name: str, help: str = "") -> Input:
    return Input(name, "bool", help, default=None)


def _whole(result: Any) -> Any:
    return result


@dataclass(frozen=True)
class Capability:
    """A call a trained task offers (see the module docstring)."""

    method: str
    summary: str
    inputs: tuple[Input, ...]
    returns: str
    example: str
    result: Callable[[dict[str, Any]], Any] = _whole  # the Python call's value, from the full result
    when: Mapping[str, Any] = field(default_factory=dict)  # selector inputs that pick this one among several
    priority: int = 0  # among tasks offering `method`, the lowest answers unless `when` picks another
    variant: str = ""  # which scorer answered, when several can (e.g. "multiple_choice", "zero_shot")
    tab: str = ""  # the title of the page's tab for it ("" for none)
    # the task's method answering many calls in one pass: (runtime, pictures [(features, boxes, pixels)],
    # **{each other input: its values, one per call}, **shared inputs) -> full results ("" for none: one by one)
    batch: str = ""
    attribute: str = ""  # the task's method that runs it (set by `capability`)

    def selectors(self) -> tuple[Input, ...]:
        """The `when` inputs, as inputs of the call (true/false flags)."""
        return tuple(flag(k, f"pick the {self.method} scorer: {k}=true or false") for k in self.when)


F = TypeVar("F", bound=Callable[..., Any])
DECLARED_METHODS: set[str] = set()  # every method any task class declares (so a model without it can say so)


def capability(method: str, **declared: Any) -> Callable[[F], F]:
    """Declare the decorated task method as the capability `method` (see `Capability`)."""

    def mark(fn: F) -> F:
        DECLARED_METHODS.add(method)
        fn.__vlmt_capability__ = Capability(method=method, attribute=fn.__name__, **declared)  # type: ignore[attr-defined]
        return fn

    return mark


def declared(cls: type) -> list[Capability]:
    """The capabilities a task class declares, its own and inherited (a subclass that overrides a
    declared method without declaring it again keeps the inherited declaration)."""
    out: dict[str, Capability] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            cap = getattr(value, "__vlmt_capability__", None)
            if isinstance(cap, Capability):
                out[name] = cap
    return list(out.values())


def capabilities_of(task: Any) -> list[Capability]:
    """The capabilities of a built task (`declared` of its class)."""
    return declared(type(task))


class Runtime(Protocol):
    """What a capability gets from the loaded model (`vlmt.inference.model.TrainedModel`)."""

    model: Any  # the encoder (a HierarchicalVL, an SVLR, ...)
    device: torch.device

    def regions(self, image: Any = None, *, regions: Any = None, boxes: Any = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(features (T, D), boxes (T, 4), pixels or None) of one picture."""
        ...


@dataclass(frozen=True)
class Offer:
    """A capability of one task of a model."""

    task_name: str
    task: Any
    capability: Capability

    def run(self, runtime: Runtime, *args: Any, **kwargs: Any) -> dict[str, Any]:
        full = getattr(self.task, self.capability.attribute)(runtime, *args, **kwargs)
        return {**full, "task": self.task_name, "variant": self.capability.variant}


def offers(tasks: Mapping[str, Any]) -> dict[str, list[Offer]]:
    """method -> the tasks offering it, in the order they answer (priority, then the tasks' order)."""
    out: dict[str, list[Offer]] = {}
    for name, task in tasks.items():
        for cap in capabilities_of(task):
            out.setdefault(cap.method, []).append(Offer(name, task, cap))
    for method in out:
        out[method].sort(key=lambda o: o.capability.priority)
    return out


def choose_offer(candidates: list[Offer], selectors: Mapping[str, Any]) -> Offer | None:
    """The first candidate whose `when` agrees with every selector given (None: no preference)."""
    for offer in candidates:
        if all(value is None or offer.capability.when.get(key, value) == value for key, value in selectors.items()):
            return offer
    return None


def inputs_of(candidates: list[Offer]) -> tuple[Input, ...]:
    """The inputs of a method over every task offering it (the first declaration of a name wins),
    selectors last."""
    seen: dict[str, Input] = {}
    for offer in candidates:
        for item in offer.capability.inputs:
            seen.setdefault(item.name, item)
    for offer in candidates:
        for item in offer.capability.selectors():
            seen.setdefault(item.name, item)
    return tuple(seen.values())


@dataclass(frozen=True)
class Picture:
    """A picture a task drew (`pictures`): the PNG and a sentence saying what it shows."""

    path: Path
    caption: str


def evenly_spaced(n: int, count: int) -> list[int]:
    """`count` distinct indices spread over range(n) (all of them when count >= n)."""
    if n <= 0 or count <= 0:
        return []
    if count >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, count)})


def jsonable(value: Any) -> Any:
    """A full result made JSON-ready: arrays and tensors to lists, numbers to floats; the picture's
    pixels are left out (they are the client's own)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items() if k != "pixels"}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy()
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return value


def iter_capabilities(tasks: Mapping[str, Any]) -> Iterator[tuple[str, Capability]]:
    """(task name, capability) over every task, in the tasks' order."""
    for name, task in tasks.items():
        for cap in capabilities_of(task):
            yield name, cap
