"""Which region CNN for easy-VQA: trained from scratch on the answer-named shapes and colours, or
the synthetic world's CNN fine-tuned on the same labels? Both see the training images only and
are scored on the validation images (carved from train; the test split is not touched):
shape and colour accuracy of the CNN's own heads on the foreground box, and of a linear probe
(logistic regression on the frozen features of the foreground box and of the whole image).

    PYTHONPATH=src python benchmarks/easy_vqa_extractor.py [--epochs 6] [--seed 0]

Needs the `easy-vqa` package; the world's CNN comes from the cached default world (generated on
first use). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from vlmt.cli import at_least
from vlmt.errors import reports_errors


def probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, classes: int) -> float:
    """Validation accuracy of a logistic regression (full-batch Adam, 300 steps) on features."""
    torch.manual_seed(0)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    layer = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(300):
        loss = F.cross_entropy(layer((x - mu) / sd), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = layer((torch.from_numpy(val_x) - mu) / sd).argmax(1).numpy()
    return float((pred == val_y).mean())


@reports_errors
def main(argv: list[str] | None = None) -> None:
    from vlmt.data.prepare import easy_vqa as prep
    from vlmt.data.readers import easy_vqa as reader

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=at_least(1), default=prep.EXTRACTOR_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", nargs="+", default=list(prep.EXTRACTORS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    root = reader.package_root()
    colours = [a for a in reader.read_answers(root) if a not in prep.SHAPES and a not in ("yes", "no")]
    examples = reader.read_easy_vqa("train", root=root)
    val_ids = prep.split_train([e.image_id for e in examples])
    train_ex = [e for e in examples if e.image_id not in val_ids]
    val_ex = [e for e in examples if e.image_id in val_ids]
    train_labels = prep.image_labels(train_ex, colours)
    val_labels = {i: l for i, l in prep.image_labels(val_ex, colours).items() if None not in l}
    images = {i: prep.load_image(reader.image_path("train", i, root=root)) for i in {e.image_id for e in examples}}

    def labelled_features(extractor, labels):
        ids = sorted(i for i, l in labels.items() if None not in l)
        boxes = [prep.proposals(images[i])[:2] for i in ids]  # foreground box, whole image
        feats = np.stack(extractor.extract([images[i] for i in ids], boxes))  # (n, 2, D)
        shape = np.array([prep.SHAPES.index(labels[i][0]) for i in ids])
        colour = np.array([colours.index(labels[i][1]) for i in ids])
        return feats, shape, colour

    results: dict = {"train_images": len(train_labels), "val_images_scored": len(val_labels), "epochs": args.epochs}
    for init in args.init:
        t = time.perf_counter()
        log: list = []
        ext = prep.train_extractor(images, train_labels, colours=colours, init=init, epochs=args.epochs,
                                   seed=args.seed, log=log, progress=lambda m: print(m, file=sys.stderr))
        seconds = time.perf_counter() - t
        tr, tr_shape, tr_colour = labelled_features(ext, train_labels)
        va, va_shape, va_colour = labelled_features(ext, val_labels)
        with torch.no_grad():
            fg = torch.from_numpy(va[:, 0])
            head_shape = ext.model.object_head(fg)[:, :len(prep.SHAPES)].argmax(1).numpy()
            head_colour = ext.model.attribute_head(fg).argmax(1).numpy()
        results[init] = {
            "train_seconds": round(seconds, 1), "final_loss": round(log[-1]["loss"], 4),
            "head_shape_acc": float((head_shape == va_shape).mean()),
            "head_colour_acc": float((head_colour == va_colour).mean()),
            "probe_foreground_shape_acc": probe(tr[:, 0], tr_shape, va[:, 0], va_shape, len(prep.SHAPES)),
            "probe_foreground_colour_acc": probe(tr[:, 0], tr_colour, va[:, 0], va_colour, len(colours)),
            "probe_whole_image_shape_acc": probe(tr[:, 1], tr_shape, va[:, 1], va_shape, len(prep.SHAPES)),
            "probe_whole_image_colour_acc": probe(tr[:, 1], tr_colour, va[:, 1], va_colour, len(colours)),
        }
        print(json.dumps({init: results[init]}), file=sys.stderr)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
