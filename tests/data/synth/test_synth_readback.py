"""The world's files read back through the dataset readers (the same code that reads the real
datasets) into the typed examples, and agree with the scene graphs they were written from."""

from __future__ import annotations

from vlmt.data.features.store import FeatureStore
from vlmt.data.readers.captions import read_karpathy
from vlmt.data.readers.flickr30k_entities import read_flickr30k_entities, read_split
from vlmt.data.readers.visual_genome import drop_vqa_overlap, read_visual_genome
from vlmt.data.readers.vqa import read_vqa
from vlmt.data.synth.world import SPLITS, VQA_SUBTYPES


def _side_error(a, b) -> float:
    return max(abs(x - y) for x, y in zip(a, b))


def _problems():
    found = []
    return found, lambda file, message, record=None, field=None: found.append((str(file), message, record, field))


def test_vqa_files_read_back(tiny_world):
    out, world = tiny_world
    problems, report = _problems()
    for split, sub in VQA_SUBTYPES.items():
        open_ended = read_vqa(out / f"v2_OpenEnded_mscoco_{sub}_questions.json",
                              out / f"v2_mscoco_{sub}_annotations.json", report=report)
        mc = read_vqa(out / f"MultipleChoice_mscoco_{sub}_questions.json",
                      out / f"mscoco_{sub}_annotations.json", report=report)
        expected = [q for i in world.main_ids(split) for q in world.questions[i]]
        assert len(open_ended) == len(mc) == len(expected)
        assert {e.image_id for e in open_ended} == set(world.main_ids(split))
        assert all(len(e.answers) == 10 and e.choices is None for e in open_ended)
        assert all(len(e.choices) == 18 and e.multiple_choice_answer in e.choices for e in mc)
        assert sorted(e.question for e in open_ended) == sorted(q.text for q in expected)
    assert problems == []


def test_captions_read_back(tiny_world):
    out, world = tiny_world
    problems, report = _problems()
    images = read_karpathy(out / "dataset_synth.json", report=report)
    assert problems == []
    assert {im.image_id for im in images} == set(world.main_ids())
    for im in images:
        assert im.split == world.split_of[im.image_id]
        assert list(im.captions) == [c.text for c in world.captions[im.image_id]]
        assert all(len(t) > 2 for t in im.tokens)


def test_grounded_sentences_read_back_with_the_objects_boxes(tiny_world):
    out, world = tiny_world
    root = out / "flickr30k_entities"
    problems, report = _problems()
    for split in SPLITS:
        assert read_split(root, split) == world.main_ids(split)
    sentences = read_flickr30k_entities(root, report=report)
    assert problems == []
    assert len(sentences) == 5 * len(world.main_ids())
    boxed = nobox = 0
    for s in sentences:
        scene = world.scenes[s.image_id]
        cap = world.captions[s.image_id][s.sentence_index]
        assert s.sentence == " ".join(cap.words)  # the plain sentence, words as in the markup
        assert len(s.phrases) == len(cap.phrases)
        for ph, truth in zip(s.phrases, cap.phrases):
            assert ph.first_word_index == truth.start and ph.text == " ".join(truth.words)
            if truth.objects:
                # boxes are whole pixels: each side within half a pixel of the exact box
                exact = [scene.objects[k].box for k in truth.objects]
                assert len(ph.boxes) == len(exact)
                assert all(min(_side_error(b, e) for e in exact) <= 0.5 for b in ph.boxes)
                boxed += 1
            else:
                assert not ph.boxes and (ph.nobox or ph.scene) and ph.scene == truth.scene
                nobox += 1
    assert boxed > 100 and nobox > 10


def test_genome_files_read_back_disjoint_from_vqa(tiny_world):
    out, world = tiny_world
    vg = out / "visual_genome"
    problems, report = _problems()
    images = read_visual_genome(vg / "image_data.json", vg / "objects.json", vg / "attributes.json", report=report)
    assert problems == []
    assert {im.image_id for im in images} == set(world.genome_ids())
    for im in images:
        scene = world.scenes[im.image_id]
        assert len(im.objects) == len(scene.objects)
        for o, truth in zip(sorted(im.objects, key=lambda o: o.object_id), scene.objects):
            assert o.names == (truth.shape,) and set(o.attributes) == set(truth.attributes)
            assert _side_error(o.box, truth.box) <= 0.5
    kept = drop_vqa_overlap(images, world.main_ids())
    kept = kept[0] if isinstance(kept, tuple) else kept
    assert len(list(kept)) == len(images)  # nothing to drop: the sets are disjoint


def test_every_image_of_every_task_has_features(tiny_world):
    out, world = tiny_world
    store = FeatureStore(out / "features")
    assert all(i in store for i in world.scenes)


def test_the_world_passes_vlmt_data_validate(tiny_world, capsys):
    from vlmt import cli

    out, _ = tiny_world
    assert cli.main(["data", "validate", str(out)]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    for name in ("dataset_synth.json", "MultipleChoice_mscoco_val2014_questions.json", "with annotations",
                 "Visual Genome", "Flickr30k Entities", "feature store"):
        assert name in text
