"""Time one SVLR joint training step at the paper's sizes (P = 50 questions x 18 choices,
100 regions per image, M = 200 Genome regions, 1000 + 1000 labels, 2048-d features).

    PYTHONPATH=src python benchmarks/svlr_step.py [--device cpu|cuda] [--steps 3] [--questions 50]

Prints one JSON line: seconds per step (forward + backward + Adam) and peak CUDA memory.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from vlmt.models.svlr import SVLR, SVLRConfig, SVLRTrainingDefaults, SVLRVQAInputs
from vlmt.tasks.svlr_recognition import RecognitionBatch, RecognitionTask
from vlmt.tasks.svlr_vqa_mc import VQAMCBatch, VQAMCTask


def make_batches(cfg: SVLRConfig, P: int, C: int, T: int, M: int, device: str):
    g = torch.Generator().manual_seed(0)
    W = 2000
    ids = lambda n: torch.randint(0, W, (n,), generator=g).tolist()  # noqa: E731
    inputs = SVLRVQAInputs.from_lists(
        region_features=torch.randn(P, T, cfg.region_dim, generator=g), region_mask=torch.ones(P, T, dtype=torch.bool),
        word_vectors=torch.randn(W, cfg.word_dim, generator=g),
        question_nouns=[ids(2) for _ in range(P)], question_adjectives=[ids(1) for _ in range(P)],
        question_bins=[[ids(2), ids(1), ids(1), ids(3)] for _ in range(P)],
        answer_words=[[ids(2) for _ in range(C)] for _ in range(P)],
        answer_nouns=[[ids(1) for _ in range(C)] for _ in range(P)],
        answer_adjectives=[[ids(1) for _ in range(C)] for _ in range(P)],
        choice_mask=torch.ones(P, C, dtype=torch.bool)).to(device)
    vqa = VQAMCBatch(inputs=inputs, correct=torch.zeros(P, dtype=torch.long, device=device))
    rec = RecognitionBatch(region_features=torch.randn(M, cfg.region_dim, generator=g),
                           object_targets=torch.rand(M, cfg.num_objects, generator=g) < 0.004,
                           attribute_targets=torch.rand(M, cfg.num_attributes, generator=g) < 0.003).to(device)
    rec.object_targets[:, 0] = True
    return vqa, rec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d = SVLRTrainingDefaults.vr_to_vqa()
    cfg = SVLRConfig()
    model = SVLR(cfg).to(args.device).train()
    model.set_label_vectors(objects=torch.randn(1000, 300, device=args.device),
                            attributes=torch.randn(1000, 300, device=args.device))
    vqa_batch, rec_batch = make_batches(cfg, args.questions, d.num_choices, d.proposals_per_image,
                                        d.regions_per_batch, args.device)
    vqa_task = VQAMCTask(model, eta_ans=d.eta_ans, alpha_ans=d.alpha_ans)
    rec_task = RecognitionTask(model, eta_obj=d.eta_obj, alpha_obj=d.alpha_obj, alpha_atr=d.alpha_atr)
    opt = torch.optim.Adam(model.parameters(), lr=d.learning_rate, weight_decay=d.weight_decay)
    times = []
    for step in range(args.steps + 1):
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        opt.zero_grad()
        loss = vqa_task(vqa_batch)["loss"] + rec_task(rec_batch)["loss"]
        loss.backward()
        opt.step()
        if args.device == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
    print(json.dumps({"device": args.device, "questions": args.questions, "choices": d.num_choices,
                      "regions_per_image": d.proposals_per_image, "genome_regions": d.regions_per_batch,
                      "seconds_per_step": min(times), "peak_cuda_mib": peak,
                      "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
