"""`vlmt data convert`: bottom-up TSV or HDF5 region features (or another store) -> a feature store,
float32 or float16."""

from __future__ import annotations

import argparse
import json
import sys
import time

from vlmt.data.features.convert import TSV_LAYOUTS, convert

EXAMPLES = """\
  vlmt data convert --from tsv trainval_36/*.tsv --out data/coco/features --feature-dim 2048
  vlmt data convert --from hdf5 features.h5 --out data/flickr30k/features --json
  vlmt data convert --from store data/coco/features --out data/coco/features16 --dtype float16"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", choices=("tsv", "hdf5", "store"), required=True,
                        help="input format: bottom-up-attention TSV, HDF5 (needs h5py), or a vlmt feature store")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="input files, converted into one store")
    parser.add_argument("--out", required=True, metavar="STORE", help="feature store directory to create")
    parser.add_argument("--tsv-fields", default="auto", metavar="LAYOUT",
                        help="TSV column names: auto (6 columns: bottom-up, 10: lxmert), one of "
                             f"{', '.join(TSV_LAYOUTS)}, or a comma-separated list")
    parser.add_argument("--feature-dim", type=int, default=None, help="expected feature size D (checked)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="how the features are kept on disk; float16 halves the store and is read back as "
                             "float32 (boxes stay float32)")
    parser.add_argument("--id-offset", type=int, default=0, metavar="N",
                        help="store every image under its id + N (e.g. Visual Genome beside COCO in one store: "
                             "N = data.datasets.genome.id_offset)")
    parser.add_argument("--overwrite", action="store_true", help="replace STORE if it exists")
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    start = time.perf_counter()
    with tqdm(desc="images", unit="img", file=sys.stderr, disable=None) as bar:
        def progress(images: int) -> None:
            bar.update(images)

        summary = convert(args.source, args.inputs, args.out, tsv_fields=args.tsv_fields,
                          feature_dim=args.feature_dim, overwrite=args.overwrite, progress=progress,
                          dtype=args.dtype, id_offset=args.id_offset)
    result = summary.as_dict() | {"seconds": round(time.perf_counter() - start, 3)}
    print(f"wrote {result['images']} images, {result['regions']} regions, D={result['feature_dim']} "
          f"({result['dtype']}) "
          f"to {result['output']} in {result['seconds']:.1f}s", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0
