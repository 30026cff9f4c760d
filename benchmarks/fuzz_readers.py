"""Fuzz every reader: mutate each supported format's files and count how vlmt takes them.

    PYTHONPATH=src python benchmarks/fuzz_readers.py [--per-format 2000] [--seed 0] [--json]

The corpus is the test fixtures (VQA v1/v2, Karpathy and COCO captions, Flickr30k Entities, Visual
Genome, GloVe text, hypernyms, bottom-up TSV) plus a small feature store and an easy-VQA folder
built from the tiny synthetic world. Each mutation changes one file - byte flips, truncation,
a value of the wrong JSON type, a missing key, a huge number, NaN / inf in features, another text
encoding, XML oddities (DTDs and entities, unclosed tags, deep nesting) - and runs what reads that
format (`vlmt data validate` on the file's folder; the word-vector, hypernym and TSV readers
directly). Outcomes:

    rejected   a clean error: VlmtError / problem lines that name a file of the corpus
    tripped    rejected, but only because the validator's last-resort guard caught a reader's
               ValueError / TypeError / KeyError ("unreadable content"): clean for the user, a
               check the reader lacks
    accepted   read without complaint (the mutation was harmless, e.g. a flipped letter in a word)
    crash      any other exception, a problem line that names no file, or a call over the time limit

Goal: zero crashes. `fuzz(...)` is also run by the test suite on a few hundred mutations.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from vlmt.cli import at_least
from vlmt.errors import ConfigError, reports_errors

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("rejected", "tripped", "accepted", "crash")
FIXTURES = ROOT / "tests" / "fixtures"


@dataclass
class Target:
    """One format: the file mutated, how it is mutated and what reads it."""

    name: str
    file: Path
    kind: str  # json | text | xml | binary
    read: Callable[[], list[str]]  # problem lines (empty = accepted); raises VlmtError for a clean rejection


# -- mutations --------------------------------------------------------------------------------------


def _json_paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:5]):
            yield from _json_paths(v, path + (i,))


def _get(value: Any, path: tuple) -> Any:
    for p in path:
        value = value[p]
    return value


ODD_VALUES = [None, True, 0, -1, 2 ** 70, 1e308, -1e308, 3.5, "", "x" * 300, "NaN", [], {}, [1, 2], {"a": 1},
              "\u0000", "é", float("nan"), float("inf")]


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    try:
        value = json.loads(data)
    except ValueError:
        return mutate_bytes(data, rng)
    paths = list(_json_paths(value))
    path = rng.choice(paths[1:] or paths)
    kind = rng.choice(["type", "type", "delete", "huge", "duplicate", "empty_container"])
    if not path:
        value = rng.choice(ODD_VALUES)
    else:
        parent = _get(value, path[:-1])
        key = path[-1]
        if kind == "delete" and isinstance(parent, dict):
            del parent[key]
        elif kind == "delete" and isinstance(parent, list):
            parent.pop(key)
        elif kind == "huge":
            parent[key] = rng.choice([2 ** 63, -(2 ** 63) - 1, 10 ** 30, 1e308, float("inf"), float("-inf"),
                                      float("nan")])
        elif kind == "duplicate" and isinstance(parent, list):
            parent.append(json.loads(json.dumps(parent[key], allow_nan=True)))
        elif kind == "empty_container":
            parent[key] = type(parent[key])() if isinstance(parent[key], (list, dict, str)) else None
        else:
            parent[key] = rng.choice(ODD_VALUES)
    return json.dumps(value, allow_nan=True).encode()


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "truncate", "insert", "delete", "zero"])
    if not b:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del b[rng.randrange(len(b)):]
    elif kind == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "delete":
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 64)]
    else:
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 64)] = b"\x00" * len(b[i:i + 64])
    return bytes(b)


def mutate_text(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(["bytes", "encoding", "lines", "fields", "number"])
    text = data.decode("utf-8", "replace")
    if kind == "encoding":
        return text.encode(rng.choice(["utf-16", "latin-1", "utf-32"]), "replace")
    lines = text.splitlines()
    if kind == "lines" and lines:
        i = rng.randrange(len(lines))
        op = rng.choice(["drop", "dup", "empty", "swap"])
        if op == "drop":
            lines.pop(i)
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "empty":
            lines[i] = ""
        else:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines).encode()
    if kind == "fields" and lines:
        i = rng.randrange(len(lines))
        parts = lines[i].split()
        if parts:
            k = rng.randrange(len(parts))
            parts[k] = rng.choice(["", "nan", "inf", "-inf", "1e999", "x", "0" * 50, "[/EN#", "]", "\t"])
            lines[i] = " ".join(parts)
        return "\n".join(lines).encode()
    if kind == "number":
        return text.replace("0", rng.choice(["9" * 30, "nan", "-", ""]), 3).encode()
    return mutate_bytes(data, rng)


XML_ODDITIES = [
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx"><!ENTITY y "&x;&x;&x;&x;">]><annotation>&y;</annotation>',
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]><annotation>&e;</annotation>',
    b"<annotation><size><width>",
    b"<annotation>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</annotation>",
    b"<annotation><size><width>-5</width><height>abc</height></size></annotation>",
    b"\xef\xbb\xbf<annotation></annotation>",
]


def mutate_xml(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(["odd", "bytes", "text", "tags"])
    if kind == "odd":
        return rng.choice(XML_ODDITIES)
    if kind == "tags":
        text = data.decode("utf-8", "replace")
        tag = rng.choice(["xmin", "ymin", "xmax", "ymax", "name", "width", "height", "bndbox", "object", "size"])
        op = rng.choice(["drop_open", "rename", "value"])
        if op == "drop_open":
            text = text.replace(f"<{tag}>", "", 1)
        elif op == "rename":
            text = text.replace(f"<{tag}>", "<zzz>", 1).replace(f"</{tag}>", "</zzz>", 1)
        else:
            start = text.find(f"<{tag}>")
            end = text.find(f"</{tag}>", start)
            if start >= 0 and end > start:
                value = rng.choice(["-1", "1e9", "nan", "", "x", "99999999999"])
                text = text[:start + len(tag) + 2] + value + text[end:]
        return text.encode()
    if kind == "text":
        return mutate_text(data, rng)
    return mutate_bytes(data, rng)


def mutate_store_file(data: bytes, rng: random.Random, name: str) -> bytes:
    """Feature-store files: flips and truncation, and NaN / inf / huge values in the float arrays."""
    if name.endswith(".bin") and rng.random() < 0.5 and len(data) >= 4:
        a = np.frombuffer(bytearray(data), dtype="<f4").copy()
        i = rng.randrange(len(a))
        a[i] = rng.choice([np.nan, np.inf, -np.inf, 3e38, -1.0, 1e-45])
        return a.tobytes()
    if name.endswith(".json"):
        return mutate_json(data, rng)
    return mutate_bytes(data, rng)


MUTATORS = {"json": mutate_json, "text": mutate_text, "xml": mutate_xml, "binary": mutate_bytes}


# -- the corpus -------------------------------------------------------------------------------------


def build_corpus(root: Path) -> list[Target]:
    """Copy the fixtures and build the small store / easy-VQA folder under `root`; the targets."""
    from vlmt.data.features.format import BOXES_FILE, FEATURES_FILE, HEADER_FILE, INDEX_FILE, RECORDS_FILE
    from vlmt.data.features.writer import FeatureStoreWriter
    from vlmt.data.text.hypernyms import HypernymMap
    from vlmt.data.text.word_vectors import load_word_vectors
    from vlmt.data.validate import validate_dir

    for name in ("vqa", "karpathy", "coco", "flickr30k_entities", "visual_genome", "text", "features"):
        shutil.copytree(FIXTURES / name, root / name)

    def validate(folder: Path) -> Callable[[], list[str]]:
        return lambda: validate_dir(folder).problems

    store = root / "store"
    rng = np.random.default_rng(0)
    with FeatureStoreWriter(store / "features", feature_dim=8) as w:
        for i in range(4):
            w.add(i, boxes=np.array([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]], np.float32),
                  features=rng.normal(size=(3, 8)).astype(np.float32), width=64, height=48)
    easy = root / "easy"
    (easy / "train" / "images").mkdir(parents=True)
    (easy / "answers.txt").write_text("yes\nno\ncircle\nred\n")
    (easy / "train" / "questions.json").write_text(json.dumps(
        [["is there a circle?", "yes", 0], ["what shape is it?", "circle", 1], ["what color is it?", "red", 1]]))
    for i in (0, 1):
        (easy / "train" / "images" / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    def vectors() -> list[str]:
        load_word_vectors(root / "text" / "glove_tiny.txt", ["the", "dog", "paris", "cat"])
        return []

    def hypernyms(name: str) -> Callable[[], list[str]]:
        def read() -> list[str]:
            HypernymMap.from_file(root / "text" / name)
            return []
        return read

    def tsv() -> list[str]:
        from vlmt.data.features.convert import convert

        out = root / "converted"
        shutil.rmtree(out, ignore_errors=True)
        convert("tsv", [root / "features" / "bottom_up.tsv"], out, overwrite=True)
        return []

    targets = [
        Target("vqa v2 questions", root / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json", "json",
               validate(root / "vqa")),
        Target("vqa v2 annotations", root / "vqa" / "v2_mscoco_val2014_annotations.json", "json",
               validate(root / "vqa")),
        Target("vqa v1 multiple choice", root / "vqa" / "MultipleChoice_mscoco_val2014_questions.json", "json",
               validate(root / "vqa")),
        Target("karpathy captions", root / "karpathy" / "dataset_coco.json", "json", validate(root / "karpathy")),
        Target("coco captions", root / "coco" / "captions_val2014.json", "json", validate(root / "coco")),
        Target("flickr30k entities sentences", next((root / "flickr30k_entities" / "Sentences").glob("*.txt")),
               "text", validate(root / "flickr30k_entities")),
        Target("flickr30k entities xml", next((root / "flickr30k_entities" / "Annotations").glob("*.xml")), "xml",
               validate(root / "flickr30k_entities")),
        Target("flickr30k entities split", root / "flickr30k_entities" / "test.txt", "text",
               validate(root / "flickr30k_entities")),
        Target("visual genome objects", root / "visual_genome" / "objects.json", "json",
               validate(root / "visual_genome")),
        Target("visual genome image data", root / "visual_genome" / "image_data.json", "json",
               validate(root / "visual_genome")),
        Target("visual genome attributes", root / "visual_genome" / "attributes.json", "json",
               validate(root / "visual_genome")),
        Target("easy-vqa questions", easy / "train" / "questions.json", "json", validate(easy)),
        Target("easy-vqa answers", easy / "answers.txt", "text", validate(easy)),
        *(Target(f"feature store {file}", store / "features" / file, "json" if file.endswith(".json") else "binary",
                 validate(store)) for file in (HEADER_FILE, RECORDS_FILE, INDEX_FILE, BOXES_FILE, FEATURES_FILE)),
        Target("glove text", root / "text" / "glove_tiny.txt", "text", vectors),
        Target("hypernyms json", root / "text" / "hypernyms_tiny.json", "json", hypernyms("hypernyms_tiny.json")),
        Target("hypernyms tsv", root / "text" / "hypernyms_tiny.tsv", "text", hypernyms("hypernyms_tiny.tsv")),
        Target("bottom-up tsv", root / "features" / "bottom_up.tsv", "text", tsv),
    ]
    clean = [t.name for t in targets if _outcome(t, root)[0] != "accepted"]
    if clean:
        raise SystemExit(f"the unmutated corpus does not read cleanly: {clean}")
    return targets


# -- running ----------------------------------------------------------------------------------------


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def fire(*_: Any) -> None:
        raise _Timeout

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _outcome(target: Target, root: Path, limit: float = 20.0) -> tuple[str, str]:
    from vlmt.errors import VlmtError

    try:
        with time_limit(limit):
            problems = target.read()
    except VlmtError as e:
        return ("rejected", "") if str(root) in str(e) or str(target.file.name) in str(e) else (
            "crash", f"error naming no file: {e}")
    except _Timeout:
        return "crash", f"over {limit} s"
    except Exception as e:  # the kind this fuzzer exists to find
        return "crash", "".join(traceback.format_exception_only(type(e), e)).strip()
    if not problems:
        return "accepted", ""
    unnamed = [p for p in problems if not p.startswith(str(root))]
    if unnamed:
        return "crash", f"problem naming no file: {unnamed[0]}"
    tripped = [p for p in problems if "unreadable content (" in p]
    return ("tripped", tripped[0].split("unreadable content", 1)[1]) if tripped else ("rejected", "")


def fuzz(per_format: int, *, seed: int = 0, only: list[str] | None = None) -> dict[str, Any]:
    """Run `per_format` mutations of every format (or those named in `only`); counts and crashes."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = build_corpus(root)
        unknown = sorted(set(only or ()) - {t.name for t in corpus})
        if unknown:  # never a silent skip: a misspelt name would fuzz nothing
            raise ConfigError(f"--only: no format {', '.join(map(repr, unknown))}; the formats are "
                              f"{', '.join(t.name for t in corpus)}")
        targets = [t for t in corpus if only is None or t.name in only]
        results: dict[str, Any] = {}
        for target in targets:
            rng = random.Random(f"{seed}:{target.name}")
            original = target.file.read_bytes()
            counts: Counter[str] = Counter()
            crashes: list[dict[str, str]] = []
            trips: list[dict[str, str]] = []
            started = time.perf_counter()
            for n in range(per_format):
                if target.kind == "binary" or target.file.parent.name == "features" and target.file.suffix == ".json":
                    mutated = mutate_store_file(original, rng, target.file.name)
                else:
                    mutated = MUTATORS[target.kind](original, rng)
                target.file.write_bytes(mutated)
                outcome, detail = _outcome(target, root)
                counts[outcome] += 1
                if outcome == "crash" and len(crashes) < 5:
                    crashes.append({"mutation": n, "detail": detail[:300]})
                if outcome == "tripped" and len(trips) < 3:
                    trips.append({"mutation": n, "detail": detail[:300]})
                target.file.write_bytes(original)
            results[target.name] = {**{k: counts.get(k, 0) for k in OUTCOMES},
                                    "seconds": round(time.perf_counter() - started, 2), "crashes": crashes,
                                    "trips": trips}
    return results


@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-format", type=at_least(1), default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", default=None, help="a format's name (repeatable)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = fuzz(args.per_format, seed=args.seed, only=args.only)
    total = {k: sum(r[k] for r in results.values()) for k in OUTCOMES}
    if args.json:
        print(json.dumps({"per_format": args.per_format, "seed": args.seed, "formats": results, "total": total,
                          "seconds": round(time.perf_counter() - started, 1)}))
        return
    width = max(len(n) for n in results)
    for name, r in results.items():
        print(f"{name:<{width}}  rejected {r['rejected']:>5}  tripped {r['tripped']:>4}  accepted {r['accepted']:>5}"
              f"  crash {r['crash']:>3}  ({r['seconds']:.1f} s)")
        for c in r["crashes"] + r["trips"]:
            print(f"    mutation {c['mutation']}: {c['detail']}")
    print(f"total: {total}  ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if total["crash"]:
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
