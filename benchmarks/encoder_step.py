"""Speed of the hierarchical model's training step on the CPU (or a GPU with --device cuda).

Measures forward + backward of (a) the dense co-attention stack alone at the anchor shapes
(batch 32, d 1024, 36 regions, 14 words, K 4, 3 null slots, 5 layers, dropout on) and (b) the
full paper-sized encoder (GloVe-sized embedding, BiLSTM, region projection, 5 layers) with the
VQA head (`VQAHead` on the last layer) at batch 64, in fp32 and under bf16 autocast. Model FLOP
utilisation is (3 x analytic forward FLOPs) / step time / the fp32 matmul rate of this machine,
measured in the same run. All measurements are interleaved round by round and medians are
reported, because the host may be shared.

    PYTHONPATH=src python benchmarks/encoder_step.py --json [--threads 2] [--rounds 5]
    PYTHONPATH=src python benchmarks/encoder_step.py --json --device cuda   # fp32 matmul rate without TF32

On a GPU every timed call ends with a device synchronisation, the matmul rate is the fp32 (not
TF32) rate unless --tf32 is given, and the bf16 comparison runs at the anchor batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch

from vlmt.cli import at_least
from vlmt.errors import reports_errors
from vlmt.models.heads.retrieval import RetrievalHead
from vlmt.models.heads.vqa import VQAHead
from vlmt.models.hierarchical import HierarchicalConfig, HierarchicalVL
from vlmt.models.layers.fused import FusedDenseCoAttentionLayer
from vlmt.tasks.retrieval import score_pair_list
from vlmt.tasks.vqa import vqa_loss

RETRIEVAL_LAYER = 3  # the paper's retrieval layer; the VQA head reads the last layer (5 of 5)

# -- analytic forward FLOPs (a multiply-add counts 2) -------------------------------------------


def dcl_layer_flops(*, batch: int, words: int, regions: int, dim: int, null_slots: int) -> int:
    """One dense co-attention layer: fused own-side GEMMs [P; W_x] (d -> 2d), null-slot
    projections, affinity over all heads, the two averaged maps applied to the d-wide values, and
    the attended-half fusion GEMM. Softmax, masking, ReLU, dropout and sums are not counted."""
    b, n, t, d, m = batch, words, regions, dim, null_slots
    own_side = 2 * b * (n + t) * d * (2 * d)
    nulls = 2 * 2 * m * d * d
    affinity = 2 * b * (m + n) * (m + t) * d
    attend = 2 * b * n * (m + t) * d + 2 * b * t * (m + n) * d
    fuse_attended = 2 * b * (n + t) * d * d
    return own_side + nulls + affinity + attend + fuse_attended


def lstm_flops(*, batch: int, words: int, input_dim: int, hidden: int, layers: int = 2) -> int:
    """Bidirectional LSTM: 4 gates of (input + hidden) -> hidden per token, per direction."""
    total, inp = 0, input_dim
    for _ in range(layers):
        total += 2 * 2 * batch * words * 4 * hidden * (inp + hidden)
        inp = 2 * hidden
    return total


def summary_flops(*, batch: int, length: int, dim: int, heads: int) -> int:
    return 2 * batch * length * (dim * dim + dim * heads) + 2 * batch * length * dim


def encoder_vqa_flops(
    *, batch: int, words: int, regions: int, dim: int, word_dim: int, feature_dim: int,
    null_slots: int, heads: int, layers: int, answers: int,
) -> int:
    """Language encoder + region projection + `layers` DCLs + VQA decoder (Eq. 4-8)."""
    language = lstm_flops(batch=batch, words=words, input_dim=word_dim, hidden=dim // 2)
    language += 2 * batch * words * (word_dim + dim) * dim
    region = 2 * batch * regions * feature_dim * dim
    encoder = layers * dcl_layer_flops(batch=batch, words=words, regions=regions, dim=dim, null_slots=null_slots)
    decoder = summary_flops(batch=batch, length=regions, dim=dim, heads=heads)
    decoder += summary_flops(batch=batch, length=words, dim=dim, heads=heads)
    decoder += 2 * batch * (2 * dim * dim + dim * answers)
    return language + region + encoder + decoder


# -- timed work ---------------------------------------------------------------------------------


DEVICE = torch.device("cpu")


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def time_once(fn: Callable[[], None]) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def _autocast(bf16: bool):
    return torch.autocast(DEVICE.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def make_gemm(size: int) -> Callable[[], None]:
    a, b = torch.randn(size, size, device=DEVICE), torch.randn(size, size, device=DEVICE)
    out = torch.empty(size, size, device=DEVICE)
    return lambda: torch.mm(a, b, out=out)


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matmul instructions (AVX512-BF16 or AMX); without them
    oneDNN/MKL fall back to slow conversion paths and bf16 autocast is far slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def make_dcl_step(args: argparse.Namespace, bf16: bool, batch: int | None = None) -> Callable[[], None]:
    torch.manual_seed(0)
    if batch is not None:
        args = argparse.Namespace(**{**vars(args), "batch": batch})
    stack = torch.nn.ModuleList(
        FusedDenseCoAttentionLayer(dim=args.dim, heads=args.heads, null_slots=args.null_slots, dropout=0.3)
        for _ in range(args.layers)
    ).train().to(DEVICE)
    words = torch.randn(args.batch, args.words, args.dim, device=DEVICE, requires_grad=True)
    regions = torch.randn(args.batch, args.regions, args.dim, device=DEVICE, requires_grad=True)
    word_mask = torch.ones(args.batch, args.words, dtype=torch.bool, device=DEVICE)
    region_mask = torch.ones(args.batch, args.regions, dtype=torch.bool, device=DEVICE)

    def step() -> None:
        stack.zero_grad(set_to_none=True)
        words.grad = regions.grad = None
        with _autocast(bf16):
            s, i = words, regions
            for layer in stack:
                s, i = layer(s, i, word_mask, region_mask)
            loss = s.float().square().mean() + i.float().square().mean()
        loss.backward()

    return step


def make_vqa_step(args: argparse.Namespace, bf16: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    config = HierarchicalConfig(
        vocab_size=args.vocab, region_feature_dim=args.feature_dim, dim=args.dim,
        num_layers=args.layers, heads=args.heads, null_slots=args.null_slots,
    )
    model = HierarchicalVL(config, word_vectors=torch.randn(args.vocab, 300)).train().to(DEVICE)
    head = VQAHead(dim=config.dim, num_answers=args.answers, heads=config.heads,
                   dropout=config.fc_dropout).train().to(DEVICE)
    b = args.vqa_batch
    tokens = torch.randint(1, args.vocab, (b, args.words), device=DEVICE)
    lengths = torch.full((b,), args.words, device=DEVICE)
    features = torch.randn(b, args.regions, args.feature_dim, device=DEVICE)
    region_mask = torch.ones(b, args.regions, dtype=torch.bool, device=DEVICE)
    targets = (torch.rand(b, args.answers, device=DEVICE) > 0.999).float()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        with _autocast(bf16):
            encoded = model(tokens, lengths, features, region_mask, depth=config.num_layers)  # VQA: the last layer
            logits = head(encoded.words, encoded.regions, encoded.word_mask, encoded.region_mask)
        vqa_loss(logits, targets).backward()

    return step


def measure_pair_scoring(args: argparse.Namespace) -> dict[str, float]:
    """All-pairs retrieval scoring of a block of images x captions (eval mode), a retrieval head on
    layer 3: `score_pair_list` over every pair with per-modality caches against running the
    encoder and the head on every expanded pair."""
    torch.manual_seed(0)
    config = HierarchicalConfig(
        vocab_size=args.vocab, region_feature_dim=args.feature_dim, dim=args.dim,
        num_layers=args.layers, heads=args.heads, null_slots=args.null_slots,
    )
    model = HierarchicalVL(config).eval().to(DEVICE)
    head = RetrievalHead(dim=config.dim, heads=config.heads, dropout=config.fc_dropout).eval().to(DEVICE)
    n_img, n_cap = args.pair_images, args.pair_captions
    tokens = torch.randint(1, args.vocab, (n_cap, args.words), device=DEVICE)
    lengths = torch.full((n_cap,), args.words, device=DEVICE)
    features = torch.randn(n_img, args.regions, args.feature_dim, device=DEVICE)
    mask = torch.ones(n_img, args.regions, dtype=torch.bool, device=DEVICE)

    def cached() -> None:
        with torch.no_grad():
            images = model.encode_images(features, mask)
            captions = model.encode_captions(tokens, lengths)
            flat = torch.arange(n_img * n_cap, device=DEVICE)
            score_pair_list(model, head, images, captions, flat // n_cap, flat % n_cap, layer=RETRIEVAL_LAYER,
                            pair_batch=args.pair_batch).view(n_img, n_cap)

    def naive() -> None:
        img = torch.arange(n_img, device=DEVICE).repeat_interleave(n_cap)
        cap = torch.arange(n_cap, device=DEVICE).repeat(n_img)
        with torch.no_grad():
            for chunk in torch.arange(n_img * n_cap, device=DEVICE).split(args.pair_batch):
                i, c = img[chunk], cap[chunk]
                encoded = model(tokens[c], lengths[c], features[i], mask[i], depth=RETRIEVAL_LAYER)
                head(encoded.words, encoded.regions, encoded.word_mask, encoded.region_mask)

    cached()
    t_cached, t_naive = [], []
    for _ in range(args.pair_rounds):
        t_cached.append(time_once(cached))
        t_naive.append(time_once(naive))
    pairs = n_img * n_cap
    return {
        "images": n_img,
        "captions": n_cap,
        "retrieval_layer": RETRIEVAL_LAYER,
        "pairs_per_s": round(pairs / statistics.median(t_cached), 1),
        "naive_pairs_per_s": round(pairs / statistics.median(t_naive), 1),
        "cached_speedup": round(statistics.median(a / b for a, b in zip(t_naive, t_cached)), 3),
    }


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--threads", type=at_least(1), default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--tf32", action="store_true", help="GPU: allow TF32 matmuls (fp32 steps and the rate)")
    parser.add_argument("--rounds", type=at_least(1), default=5, help="interleaved measurement rounds")
    parser.add_argument("--warmup", type=at_least(0), default=1)
    parser.add_argument("--batch", type=at_least(1), default=32)
    parser.add_argument("--vqa-batch", type=at_least(1), default=64)
    parser.add_argument("--dim", type=at_least(1), default=1024)
    parser.add_argument("--words", type=at_least(1), default=14)
    parser.add_argument("--regions", type=at_least(1), default=36)
    parser.add_argument("--heads", type=at_least(1), default=4)
    parser.add_argument("--null-slots", type=at_least(0), default=3)
    parser.add_argument("--layers", type=at_least(1), default=5)
    parser.add_argument("--vocab", type=at_least(1), default=10000)
    parser.add_argument("--answers", type=at_least(1), default=3129)
    parser.add_argument("--feature-dim", type=at_least(1), default=2048)
    parser.add_argument("--gemm-size", type=at_least(1), default=2048)
    parser.add_argument("--gemm-reps", type=at_least(1), default=3, help="GEMMs timed before and after each step")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast runs")
    parser.add_argument(
        "--bf16-batch", type=int, default=None,
        help="batch of the fp32-vs-bf16 comparison (default: the anchor batch on CPUs with native "
        "bf16, else 2, because emulated bf16 GEMMs take minutes per anchor-sized step)",
    )
    parser.add_argument("--no-vqa", action="store_true", help="skip the encoder + VQA step")
    parser.add_argument("--pair-scoring", action="store_true", help="also time all-pairs retrieval scoring")
    parser.add_argument("--pair-images", type=at_least(1), default=8)
    parser.add_argument("--pair-captions", type=at_least(1), default=40)
    parser.add_argument("--pair-batch", type=at_least(1), default=64)
    parser.add_argument("--pair-rounds", type=at_least(1), default=3)
    args = parser.parse_args(argv)
    if args.dim % args.heads:
        parser.error(f"--dim {args.dim} must be divisible by --heads {args.heads}")
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32

    gemm = make_gemm(args.gemm_size)
    work: dict[str, Callable[[], None]] = {"dcl": make_dcl_step(args, False)}
    native_bf16 = DEVICE.type == "cuda" or cpu_has_native_bf16()
    bf16_batch = args.bf16_batch or (args.batch if native_bf16 else 2)
    if not args.no_bf16:
        work["dcl_bf16"] = make_dcl_step(args, True, bf16_batch)
        if bf16_batch != args.batch:
            work["dcl_fp32_small"] = make_dcl_step(args, False, bf16_batch)
    if not args.no_vqa:
        work["vqa"] = make_vqa_step(args, False)
    for fn in [gemm, *work.values()]:
        for _ in range(args.warmup):
            fn()
    # Every timed step is bracketed by GEMM timings, so each step has a matmul rate measured
    # under the same load; per-round ratios are taken before the median.
    gemm_flops = 2 * args.gemm_size**3
    times: dict[str, list[float]] = {name: [] for name in work}
    rates: dict[str, list[float]] = {name: [] for name in work}

    def gemm_rate() -> float:
        return args.gemm_reps * gemm_flops / time_once(lambda: [gemm() for _ in range(args.gemm_reps)])

    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        for name, fn in work.items():
            before = gemm_rate()
            times[name].append(time_once(fn))
            rates[name].append((before + gemm_rate()) / 2)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{k} {v[-1] * 1e3:.0f} ms @ {rates[k][-1] / 1e9:.0f} GFLOP/s" for k, v in times.items()),
            file=sys.stderr)
    med = {name: statistics.median(v) for name, v in times.items()}

    def mfu(name: str, forward_flops: int) -> float:
        return statistics.median(3 * forward_flops / t / g for t, g in zip(times[name], rates[name]))

    def best_round(name: str, forward_flops: int) -> dict[str, float]:
        """The least disturbed round (highest MFU): what the code does on an idle host."""
        t, g = max(zip(times[name], rates[name]), key=lambda tg: 3 * forward_flops / tg[0] / tg[1])
        return {"ms_per_step": round(t * 1e3, 1), "mfu": round(3 * forward_flops / t / g, 3),
                "gemm_gflops": round(g / 1e9, 1)}

    all_rates = [g for v in rates.values() for g in v]
    dcl_fwd = args.layers * dcl_layer_flops(
        batch=args.batch, words=args.words, regions=args.regions, dim=args.dim, null_slots=args.null_slots
    )
    result: dict[str, object] = {
        "gemm_gflops": round(statistics.median(all_rates) / 1e9, 2),
        "dcl_stack": {
            "ms_per_step": round(med["dcl"] * 1e3, 1),
            "samples_per_s": round(args.batch / med["dcl"], 2),
            "forward_gflop": round(dcl_fwd / 1e9, 3),
            "mfu": round(mfu("dcl", dcl_fwd), 3),
            "best_round": best_round("dcl", dcl_fwd),
        },
    }
    if not args.no_vqa:
        vqa_fwd = encoder_vqa_flops(
            batch=args.vqa_batch, words=args.words, regions=args.regions, dim=args.dim, word_dim=300,
            feature_dim=args.feature_dim, null_slots=args.null_slots, heads=args.heads, layers=args.layers,
            answers=args.answers,
        )
        result["encoder_vqa_step"] = {
            "ms_per_step": round(med["vqa"] * 1e3, 1),
            "samples_per_s": round(args.vqa_batch / med["vqa"], 2),
            "forward_gflop": round(vqa_fwd / 1e9, 3),
            "mfu": round(mfu("vqa", vqa_fwd), 3),
            "best_round": best_round("vqa", vqa_fwd),
        }
    if not args.no_bf16:
        fp32_name = "dcl" if bf16_batch == args.batch else "dcl_fp32_small"
        fp32 = med[fp32_name]
        # per-round ratio against the fp32 step timed next to it, then the median
        result["bf16_speedup"] = round(statistics.median(
            a / b for a, b in zip(times[fp32_name], times["dcl_bf16"])), 3)
        result["bf16_comparison"] = {
            "batch": bf16_batch,
            "fp32_ms_per_step": round(fp32 * 1e3, 1),
            "bf16_ms_per_step": round(med["dcl_bf16"] * 1e3, 1),
            "native_bf16": native_bf16,
        }
    if args.pair_scoring:
        result["pair_scoring"] = measure_pair_scoring(args)
    result["device"] = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu"
    result["threads"] = args.threads
    result["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["cpus"] = os.cpu_count()
    result["rounds"] = args.rounds
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
