"""Time one SVLR joint training step at the paper's sizes (P = 50 questions x 18 choices,
100 regions per image, M = 200 Genome regions, 1000 + 1000 labels, 2048-d features).

    PYTHONPATH=src python benchmarks/svlr_step.py [--device cpu|cuda] [--steps 3] [--questions 50]

Prints one JSON line: seconds per step (forward + backward + Adam) and peak CUDA memory.

The model, the multiple-choice head, the loss weights, margins and Adam settings are those of
configs/svlr_paper.yaml (Joint SVLR, VR -> VQA weights); the step computes what the config's two
tasks (`svlr_vqa_mc`, `svlr_recognition`) compute, on random batches of the paper's sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from vlmt.cli import at_least
from vlmt.config import bundled_config
from vlmt.data.question_bins import NUM_BINS
from vlmt.errors import reports_errors
from vlmt.models.heads.multiple_choice import MultipleChoiceScorer
from vlmt.models.heads.word_region import encode_vqa, recognition_scores
from vlmt.models.svlr import SVLR, SVLRConfig, SVLRVQAInputs
from vlmt.tasks.svlr_batches import RecognitionBatch, VQAMCBatch
from vlmt.tasks.svlr_recognition import attribute_loss, object_loss
from vlmt.tasks.svlr_vqa_mc import answer_ranking_loss
from vlmt.training.build import load_experiment

# Sizes of the paper's data that no config holds: VQA v1 multiple choice has 18 choices per
# question, and every VQA image has 100 Edge Box proposals with 2048-d ResNet-50 features.
NUM_CHOICES = 18
PROPOSALS_PER_IMAGE = 100
REGION_DIM = 2048


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


@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=at_least(1), default=3)
    parser.add_argument("--questions", type=at_least(1), default=50)
    parser.add_argument("--threads", type=at_least(1), default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    paper = load_experiment(bundled_config("svlr_paper.yaml"))
    vqa_cfg, rec_cfg = paper.tasks["vqa"], paper.tasks["recognition"]
    sizes = paper.data.families["svlr"]
    cfg = dataclasses.replace(paper.model, word_dim=sizes.word_dim, region_dim=REGION_DIM,
                              num_objects=sizes.num_objects, num_attributes=sizes.num_attributes)
    model = SVLR(cfg).to(args.device).train()
    model.set_label_vectors(objects=torch.randn(cfg.num_objects, cfg.word_dim, device=args.device),
                            attributes=torch.randn(cfg.num_attributes, cfg.word_dim, device=args.device))
    head = MultipleChoiceScorer(num_labels=model.num_labels, embed_dim=cfg.embed_dim, num_question_bins=NUM_BINS,
                                fusion_dim=vqa_cfg.fusion_dim).to(args.device).train()
    vqa_batch, rec_batch = make_batches(cfg, args.questions, NUM_CHOICES, PROPOSALS_PER_IMAGE,
                                        rec_cfg.batch_size, args.device)

    def vqa_loss(batch: VQAMCBatch) -> torch.Tensor:  # task svlr_vqa_mc: Eq. 8 on the scores of Eq. 3-7
        scores = head(encode_vqa(model, batch.inputs), batch.inputs).scores
        return answer_ranking_loss(scores, batch.correct, batch.inputs.choice_mask, margin=vqa_cfg.eta_ans)

    def recognition_loss(batch: RecognitionBatch) -> torch.Tensor:  # task svlr_recognition: Eq. 1 + Eq. 2
        obj, atr = recognition_scores(model, batch.region_features, batch.region_mask,
                                            extra_object_vectors=batch.extra_object_vectors)
        label_set = torch.zeros(obj.shape[1], dtype=torch.bool, device=obj.device)
        label_set[:cfg.num_objects] = True  # O; extra hypernym columns are positives only
        l_obj = object_loss(obj, batch.object_targets, label_set=label_set, margin=rec_cfg.eta_obj,
                            row_mask=batch.region_mask)
        l_atr = attribute_loss(atr, batch.attribute_targets, row_mask=batch.region_mask)
        return rec_cfg.object_weight * l_obj + rec_cfg.attribute_weight * l_atr

    parameters = [*model.parameters(), *head.parameters()]
    o = paper.optim
    opt = torch.optim.Adam(parameters, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    times = []
    for step in range(args.steps + 1):
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        opt.zero_grad()
        loss = vqa_cfg.loss_weight * vqa_loss(vqa_batch) + rec_cfg.loss_weight * recognition_loss(rec_batch)
        loss.backward()
        opt.step()
        if args.device == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
    print(json.dumps({"device": args.device, "questions": args.questions, "choices": NUM_CHOICES,
                      "regions_per_image": PROPOSALS_PER_IMAGE, "genome_regions": rec_cfg.batch_size,
                      "seconds_per_step": min(times), "peak_cuda_mib": peak,
                      "parameters": sum(p.numel() for p in parameters)}))


if __name__ == "__main__":
    sys.exit(main())
