"""How hard, and how often wrong, are retrieval's hard negatives on the world?

A companion (`vlmt.tasks.retrieval_negatives`) is meant to be a picture described like the
anchor's but not matching its caption. On the synthetic world the true scenes say exactly when a
caption is true of a picture (`vlmt.tasks.retrieval_ceiling`, generated reading), so this script
measures, over every training example of a world, for companions drawn from `hard_pool` nearest
pictures and for uniformly drawn other pictures (what in-batch negatives are):

- false image negatives: the share of negative pictures of which the anchor's caption is true;
- false caption negatives: the share of negative captions true of the anchor's picture;
- words shared: the mean share of the anchor caption's distinct words found in the negative
  picture's captions (how alike the two are described).

    PYTHONPATH=src python benchmarks/hard_negatives.py --size default --pools 5,10,20,50 --json
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from vlmt.data.synth.world import build, world_size
from vlmt.errors import reports_errors
from vlmt.tasks.retrieval_ceiling import caption_claims, oracle_scores
from vlmt.tasks.retrieval_negatives import caption_neighbours, draw_companions
from vlmt.tasks.vl_data import caption_tokens


def measure(size: str, seed: int, pools: list[int], draw_seed: int = 0) -> dict:
    w = build(world_size(size), seed)
    ids = w.main_ids("train")
    scenes = [w.scenes[i] for i in ids]
    vocab: dict[str, int] = {}
    tokens, example_picture, picture_examples, claims = [], [], [], []
    for p, image_id in enumerate(ids):
        rows = []
        for c in w.captions[image_id]:
            rows.append(len(tokens))
            tokens.append(np.array([vocab.setdefault(t, len(vocab)) for t in caption_tokens(c.text)], dtype=np.int64))
            example_picture.append(p)
            claims.append(caption_claims(c))
        picture_examples.append(np.array(rows))
    truth = oracle_scores(scenes, claims)  # (pictures, examples): 1 where the caption is true of the picture
    keys = [t.tobytes() for t in tokens]
    index = {"example_picture": np.array(example_picture), "picture_examples": picture_examples,
             "caption_keys": keys, "picture_keys": [frozenset(keys[r] for r in rows) for rows in picture_examples]}
    words = [set(t.tolist()) for t in tokens]
    picture_words = [set().union(*(words[r] for r in rows)) for rows in picture_examples]
    anchors = np.arange(len(tokens))
    own = index["example_picture"][anchors]

    def rates(companions: np.ndarray) -> dict:
        picture = index["example_picture"][companions]
        shared = [len(words[a] & picture_words[q]) / len(words[a]) for a, q in zip(anchors, picture)]
        return {"false_image_negatives": round(100 * float(truth[picture, anchors].mean()), 2),
                "false_caption_negatives": round(100 * float(truth[own, companions].mean()), 2),
                "words_shared": round(100 * float(np.mean(shared)), 1)}

    rng = np.random.default_rng(draw_seed)
    uniform = np.array([rng.choice(picture_examples[q]) for q in
                        ((own + rng.integers(1, len(ids), size=len(own))) % len(ids))])
    out = {"world": size, "seed": seed, "pictures": len(ids), "examples": len(tokens),
           "captions_true_per_picture": round(float(truth.sum(1).mean()), 1),
           "uniform": rates(uniform), "pools": {}}
    for pool in pools:
        near = caption_neighbours([[tokens[r] for r in rows] for rows in picture_examples], pool)
        companions = draw_companions(np.random.default_rng(draw_seed), anchors.tolist(), 1, neighbours=near,
                                     **index)[:, 0]
        out["pools"][str(pool)] = rates(companions)
    return out


@reports_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="default", help="world size (default: default)")
    ap.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    ap.add_argument("--pools", default="5,10,20,50", help="hard_pool values, comma-separated")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    try:
        pools = [int(p) for p in args.pools.split(",")]
    except ValueError:
        ap.error(f"--pools must be comma-separated integers, got {args.pools!r}")
    result = measure(args.size, args.seed, pools)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"world {result['world']} seed {result['seed']}: {result['pictures']} training pictures, "
          f"{result['examples']} captions; a picture makes {result['captions_true_per_picture']} of them true")
    print(f"{'negatives':<22} {'false image neg %':>18} {'false caption neg %':>20} {'words shared %':>15}")
    rows = [("uniform (in-batch)", result["uniform"])] + [(f"hard_pool {p}", r) for p, r in result["pools"].items()]
    for name, r in rows:
        print(f"{name:<22} {r['false_image_negatives']:>18} {r['false_caption_negatives']:>20} {r['words_shared']:>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
