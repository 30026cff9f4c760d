"""The vqa / retrieval / grounding tasks on the tiny world with an untrained small encoder:
their heads and layers, batches, padding, the all-pairs score layout, attention maps for pictures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from vlmt.errors import ConfigError, DataError
from vlmt.tasks.base import EvalMode, Task
from vlmt.training.build import build_parts, load_experiment

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = load_experiment(CONFIG, ["model.dim=32", "model.word_dim=16"])
    built = build_parts(cfg, CPU)
    built.objective.eval()
    return built.model, built.tasks


def test_tasks_follow_the_protocol_and_own_their_heads_at_their_layers(parts):
    model, tasks = parts
    assert set(tasks) == {"retrieval", "vqa", "grounding"}
    for name, task in tasks.items():
        assert isinstance(task, Task)
        assert isinstance(task.head, torch.nn.Module)
        assert not any(p is q for p in task.head.parameters() for q in model.parameters())
    # tiny.yaml puts VQA at layer 3; the others keep the paper's layers
    assert (tasks["retrieval"].config.layer, tasks["vqa"].config.layer, tasks["grounding"].config.layer) == (3, 3, 2)
    assert not hasattr(model, "heads")


def test_a_layer_beyond_the_encoder_is_a_config_error():
    cfg = load_experiment(CONFIG, ["model.dim=32", "model.word_dim=16", "tasks.vqa.layer=6"])
    with pytest.raises(ConfigError, match=r"tasks.vqa.layer: 6 is outside the encoder's layers 0..3"):
        build_parts(cfg, CPU)


def test_train_stream_is_resumable_and_sliced_for_ddp(parts):
    _, tasks = parts
    task = tasks["vqa"]
    stream = task.batches("train")
    batches = [next(stream) for _ in range(4)]
    resumed = next(task.batches("train", start=3))
    assert torch.equal(resumed["tokens"], batches[3]["tokens"])
    half = [next(task.batches("train", start=3, rank=r, world_size=2)) for r in (0, 1)]
    assert torch.equal(torch.cat([h["index"] for h in half]), batches[3]["index"])


def test_padding_never_changes_an_example_s_outputs(parts):
    model, tasks = parts
    for name in ("vqa", "retrieval", "grounding"):
        task = tasks[name]
        part = task._split("val")
        lengths = [len(t) for t in part["tokens"]]
        short = min(range(len(lengths)), key=lambda i: lengths[i])
        long = max(range(len(lengths)), key=lambda i: lengths[i])
        assert lengths[short] < lengths[long]
        alone = task._collate(part, [short])
        padded = task._collate(part, [short, long])
        assert padded["tokens"].shape[1] > alone["tokens"].shape[1]
        with torch.no_grad():
            a, b = task.logits(model, alone), task.logits(model, padded)[:1]
            if name == "grounding":
                b = b[:, :a.shape[1], :a.shape[2]]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_all_pairs_scores_are_laid_out_image_by_caption(parts):
    model, tasks = parts
    task = tasks["retrieval"]
    scores = task.score_matrix(model, "val", device=CPU)
    part = task._split("val")
    c = task.per_image
    assert scores.shape == (len(part["images"]), c * len(part["images"]))
    # entry (i, j) is the score of image i with caption j (caption j belongs to image j // c)
    rows = {(iid, j): r for r, (iid, j) in enumerate(zip(part["image_ids"], part["caption_index"]))}
    for i, j in [(0, 0), (1, 7), (len(part["images"]) - 1, 3)]:
        image = part["images"][i]
        caption_owner = part["images"][j // c]
        cap = task._collate(part, [rows[(caption_owner.image_id, j % c)]])
        img = task._collate(part, [rows[(image.image_id, 0)]])
        with torch.no_grad():
            direct = task.logits(model, {"tokens": cap["tokens"], "lengths": cap["lengths"],
                                         "region_features": img["region_features"],
                                         "region_mask": img["region_mask"]})
        assert scores[i, j] == pytest.approx(float(direct), abs=1e-4)


def test_a_first_images_subset_scores_the_top_left_block_of_the_whole_split(parts):
    model, tasks = parts
    task = tasks["retrieval"]
    c = task.per_image
    whole = task.score_matrix(model, "train", device=CPU)
    assert whole.shape[0] == len(task._split("train")["images"]) > 5
    first = task.score_matrix(model, "train", device=CPU, first_images=5)
    assert first.shape == (5, 5 * c)
    # the same pairs as the whole split's first 5 images with their captions
    assert first == pytest.approx(whole[:5, :5 * c], abs=1e-5)
    # eval_layout names what those rows and columns are: the split's first 5 images, then each
    # one's first c caption rows in turn; a pair scored directly from that layout is the entry
    part = task._split("train")
    images, caption_rows = task.eval_layout("train", first_images=5)
    assert [im.image_id for im in images] == [im.image_id for im in part["images"][:5]]
    assert [(part["image_ids"][r], part["caption_index"][r]) for r in caption_rows] == \
        [(im.image_id, j) for im in images for j in range(c)]
    for i, j in [(0, 0), (1, 2 * c - 1), (4, 2)]:
        cap = task._collate(part, [caption_rows[j]])
        img = task._collate(part, [next(r for r, iid in enumerate(part["image_ids"]) if iid == images[i].image_id)])
        with torch.no_grad():
            direct = task.logits(model, {"tokens": cap["tokens"], "lengths": cap["lengths"],
                                         "region_features": img["region_features"],
                                         "region_mask": img["region_mask"]})
        assert first[i, j] == pytest.approx(float(direct), abs=1e-4)
    assert task.eval_layout("train")[1][:5 * c] == caption_rows  # the whole split's layout starts the same
    with pytest.raises(ConfigError, match="first_images must be >= 1"):
        task.score_matrix(model, "train", device=CPU, first_images=0)
    # a train image with fewer captions than scoring uses is a clear error naming it, not a KeyError
    short = dataclasses.replace(part["images"][1], captions=part["images"][1].captions[:c - 1])
    task._splits["train"] = {**part, "images": [part["images"][0], short, *part["images"][2:]]}
    try:
        with pytest.raises(DataError, match=f"image {short.filename}.*has {c - 1} captions"):
            task.score_matrix(model, "train", device=CPU, first_images=5)
    finally:
        task._splits["train"] = part


def test_image_caches_and_caption_blocks_score_as_the_matrix_does(parts):
    """The public pieces of `score_matrix` (what `benchmarks/paper_scale.py` times): any pictures
    and caption rows of `eval_layout`, encoded and paired block by block, give the matrix's entries."""
    model, tasks = parts
    task = tasks["retrieval"]
    whole = task.score_matrix(model, "val", device=CPU)
    images, caption_rows = task.eval_layout("val")
    chosen_images, chosen_rows = images[2:5], caption_rows[3:10]
    got = torch.full((len(chosen_images), len(chosen_rows)), float("nan"))
    with EvalMode(model, task), torch.no_grad():
        caches = task.image_caches(model, chosen_images, CPU)
        for c_lo, captions in task.caption_blocks(model, "val", chosen_rows, CPU):
            for i_lo, cache in caches:
                block = task.score_pairs(model, cache, captions)
                got[i_lo:i_lo + block.shape[0], c_lo:c_lo + block.shape[1]] = block
    # same pairs through the same batched encoder calls: equal to rounding
    assert got.numpy() == pytest.approx(whole[2:5, 3:10], abs=1e-5)


def test_losses_are_finite_and_reach_every_decoder(parts):
    model, tasks = parts
    model.train()
    try:
        for name, task in tasks.items():
            model.zero_grad()
            task.train()
            out = task(model, next(task.batches("train")))
            assert torch.isfinite(out["loss"])
            out["loss"].backward()
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in task.head.parameters())
            task.zero_grad()
            task.eval()
    finally:
        model.eval()


def test_attention_maps_for_pictures(parts):
    model, tasks = parts
    for name in ("vqa", "retrieval"):
        batch, info = tasks[name].example_batch("val", 2)
        maps = tasks[name].attention_maps(model, batch)
        assert maps["regions"].shape == batch["region_mask"].shape
        assert maps["words"].shape == batch["tokens"].shape
        for key in ("regions", "words"):
            assert float(maps[key].sum()) == pytest.approx(1.0, abs=1e-5)
        assert len(info["words"]) == int(batch["lengths"][0])
        assert Path(info["image_path"]).is_file()
    batch, info = tasks["grounding"].example_batch("val", 0)
    maps = tasks["grounding"].attention_maps(model, batch)
    p = len(info["phrases"])
    assert maps["phrase_regions"].shape == (1, p, batch["region_mask"].shape[1])
    assert ((maps["phrase_regions"] >= 0) & (maps["phrase_regions"] <= 1)).all()
    assert not model.training


def test_metric_keys_and_ranges_of_an_untrained_model(parts):
    model, tasks = parts
    vqa = tasks["vqa"].evaluate(model, "val", device=CPU)
    assert {"accuracy", "atype/yes_no", "atype/number", "atype/other"} <= set(vqa)
    assert any(k.startswith("qtype/") for k in vqa)
    retrieval = tasks["retrieval"].evaluate(model, "val", device=CPU)
    assert set(retrieval) == {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum", "i2t_medr",
                              "t2i_medr", "seconds", "images"}
    grounding = tasks["grounding"].evaluate(model, "val", device=CPU)
    assert set(grounding) == {"r1", "r5", "r10"}
    for metrics in (vqa, grounding):
        assert all(0.0 <= v <= 100.0 for v in metrics.values())
    assert retrieval["i2t_r1"] <= retrieval["i2t_r5"] <= retrieval["i2t_r10"]
