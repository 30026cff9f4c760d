"""`vlmt data validate`: clean fixtures pass; a broad catalogue of corruptions, each must exit 1
with one line naming the file and the field (and never a traceback)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from vlmt.cli import main
from vlmt.data.features.writer import FeatureStoreWriter
from vlmt.data.validate import require_valid, validate_dir
from vlmt.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATASETS = ("vqa", "karpathy", "coco", "flickr30k_entities", "visual_genome")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name in DATASETS:
        shutil.copytree(FIXTURES / name, root / name)
    return root


def _validate(root: Path, capsys) -> tuple[int, str]:
    rc = main(["data", "validate", str(root)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_clean_fixtures_exit_0_with_one_summary_per_dataset(data, capsys):
    rc, err = _validate(data, capsys)
    assert rc == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 8  # 3 VQA question files, 2 Karpathy, COCO, Flickr30k Entities, Visual Genome
    assert any(line.startswith("Visual Genome") and "1 images also in VQA" in line for line in lines)


def test_json_output_is_one_object(data, capsys):
    rc = main(["data", "validate", str(data), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["ok"] and out["problems"] == [] and len(out["summaries"]) == 8


def test_library_function_gives_the_same_lines(data):
    p = data / "vqa" / "v2_mscoco_val2014_annotations.json"
    p.write_text(p.read_text().replace('"answer_type": "number"', '"answer_type": "count"'))
    report = validate_dir(data)
    assert not report.ok and len(report.problems) == 1
    with pytest.raises(DataError) as e:
        require_valid(data)
    assert report.problems[0] in str(e.value)


def test_empty_folder_is_a_problem(tmp_path, capsys):
    rc, err = _validate(tmp_path, capsys)
    assert rc == 1 and "no dataset file" in err


# ---------------------------------------------------------------- corruption catalogue

def edit_json(fn: Callable[[Any], Any], *, top: bool = False) -> Callable[[Path], None]:
    """Edit the parsed file in place with `fn`; with `top`, `fn` returns the new top level."""
    def apply(path: Path) -> None:
        data = json.loads(path.read_text())
        out = fn(data)
        path.write_text(json.dumps(out if top else data))
    return apply


def truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def replace(old: str, new: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
    return apply


def setitem(*keys_and_value: Any) -> Callable[[Any], None]:
    *keys, value = keys_and_value

    def fn(data: Any) -> None:
        for k in keys[:-1]:
            data = data[k]
        data[keys[-1]] = value
    return fn


def delitem(*keys: Any) -> Callable[[Any], None]:
    def fn(data: Any) -> None:
        for k in keys[:-1]:
            data = data[k]
        del data[keys[-1]]
    return fn


V2Q = "vqa/v2_OpenEnded_mscoco_val2014_questions.json"
V2A = "vqa/v2_mscoco_val2014_annotations.json"
MCQ = "vqa/MultipleChoice_mscoco_val2014_questions.json"
KC = "karpathy/dataset_coco.json"
KF = "karpathy/dataset_flickr30k.json"
CC = "coco/captions_val2014.json"
FS = "flickr30k_entities/Sentences/1000092795.txt"
FA = "flickr30k_entities/Annotations/1000092795.xml"
VI = "visual_genome/image_data.json"
VO = "visual_genome/objects.json"
VA = "visual_genome/attributes.json"

CORRUPTIONS = {
    # VQA questions
    "vqa questions truncated": (V2Q, truncate, V2Q, "not valid JSON"),
    "vqa question id a string": (V2Q, edit_json(setitem("questions", 0, "question_id", "262148000")), V2Q,
                                 "'question_id'"),
    "vqa question missing": (V2Q, edit_json(delitem("questions", 2, "question")), V2Q, "'question'"),
    "vqa question empty": (V2Q, edit_json(setitem("questions", 1, "question", "  ")), V2Q, "'question'"),
    "vqa image id null": (V2Q, edit_json(setitem("questions", 1, "image_id", None)), V2Q, "'image_id'"),
    "vqa wrong split name": (V2Q, edit_json(setitem("data_subtype", "validation2014")), V2Q, "'data_subtype'"),
    "vqa split differs from file name": (V2Q, edit_json(setitem("data_subtype", "train2014")), V2Q, "'data_subtype'"),
    "vqa duplicate question id": (V2Q, edit_json(lambda d: d["questions"].append(dict(d["questions"][0]))), V2Q,
                                  "'question_id'"),
    "vqa questions not a list": (V2Q, edit_json(setitem("questions", {})), V2Q, "'questions'"),
    "vqa top level a list": (V2Q, edit_json(lambda d: [d], top=True), V2Q, "top level"),
    # VQA annotations
    "vqa annotation of unknown question": (V2A, edit_json(setitem("annotations", 0, "question_id", 999)), V2A,
                                           "'question_id'"),
    "vqa question without annotation": (V2A, edit_json(lambda d: d["annotations"].pop()), V2Q, "'question_id'"),
    "vqa annotation image differs": (V2A, edit_json(setitem("annotations", 0, "image_id", 393225)), V2A, "'image_id'"),
    "vqa nine answers": (V2A, edit_json(lambda d: d["annotations"][1]["answers"].pop()), V2A, "'answers'"),
    "vqa unknown answer type": (V2A, edit_json(setitem("annotations", 3, "answer_type", "yesno")), V2A,
                                "'answer_type'"),
    "vqa answer not a string": (V2A, edit_json(setitem("annotations", 4, "answers", 3, "answer", 2)), V2A,
                                "'answer'"),
    "vqa answer id missing": (V2A, edit_json(delitem("annotations", 4, "answers", 0, "answer_id")), V2A, "'answer_id'"),
    "vqa mc answer empty": (V2A, edit_json(setitem("annotations", 2, "multiple_choice_answer", "")), V2A,
                            "'multiple_choice_answer'"),
    "vqa annotations truncated": (V2A, truncate, V2A, "not valid JSON"),
    # VQA v1 multiple choice
    "mc 17 choices": (MCQ, edit_json(lambda d: d["questions"][0]["multiple_choices"].pop()), MCQ, "'multiple_choices'"),
    "mc choices lack the answer": (MCQ, edit_json(setitem("questions", 1, "multiple_choices", 0, "maybe")), MCQ,
                                   "'multiple_choices'"),
    "mc choices missing": (MCQ, edit_json(delitem("questions", 2, "multiple_choices")), MCQ, "'multiple_choices'"),
    "mc empty choice": (MCQ, edit_json(setitem("questions", 2, "multiple_choices", 5, "")), MCQ, "'multiple_choices'"),
    # Karpathy
    "karpathy wrong split name": (KC, edit_json(setitem("images", 0, "split", "validation")), KC, "'split'"),
    "karpathy empty tokens": (KC, edit_json(setitem("images", 1, "sentences", 2, "tokens", [])), KC, "'tokens'"),
    "karpathy empty raw": (KC, edit_json(setitem("images", 1, "sentences", 0, "raw", "")), KC, "'raw'"),
    "karpathy sentence imgid": (KC, edit_json(setitem("images", 2, "sentences", 0, "imgid", 7)), KC, "'imgid'"),
    "karpathy sentids": (KC, edit_json(setitem("images", 2, "sentids", [1, 2, 3])), KC, "'sentids'"),
    "karpathy cocoid string": (KC, edit_json(setitem("images", 3, "cocoid", "318556")), KC, "'cocoid'"),
    "karpathy duplicate sentid": (KF, edit_json(setitem("images", 1, "sentences", 0, "sentid", 0)), KF, "'sentid'"),
    "karpathy images missing": (KF, edit_json(delitem("images")), KF, "'images'"),
    "karpathy truncated": (KF, truncate, KF, "not valid JSON"),
    # COCO captions
    "coco caption of unknown image": (CC, edit_json(setitem("annotations", 0, "image_id", 1)), CC, "'image_id'"),
    "coco caption null": (CC, edit_json(setitem("annotations", 1, "caption", None)), CC, "'caption'"),
    "coco image without caption": (CC, edit_json(lambda d: d["images"].append(dict(d["images"][0], id=5))), CC,
                                   "'annotations'"),
    "coco duplicate annotation id": (CC, edit_json(setitem("annotations", 1, "id", 770337)), CC, "'id'"),
    "coco negative width": (CC, edit_json(setitem("images", 0, "width", -640)), CC, "'width'"),
    # Flickr30k Entities sentences
    "entities unclosed bracket": (FS, replace("shaggy hair]", "shaggy hair"), FS, "'phrase'"),
    "entities stray bracket": (FS, replace("the yard]", "the yard]]"), FS, "'phrase'"),
    "entities bad entity id": (FS, replace("/EN#283586/", "/EN#abc/"), FS, "'phrase'"),
    "entities no type": (FS, replace("/EN#283586/clothing", "/EN#283586"), FS, "'phrase'"),
    "entities unknown entity": (FS, replace("/EN#283586/", "/EN#999999/"), FS, "'phrase'"),
    # Flickr30k Entities annotations
    "entities inverted box": (FA, replace("<xmin>320</xmin>", "<xmin>480</xmin>"), FA, "'bndbox'"),
    "entities box outside image": (FA, replace("<ymax>330</ymax>", "<ymax>900</ymax>"), FA, "'bndbox'"),
    "entities box not a number": (FA, replace("<xmin>40</xmin>", "<xmin>forty</xmin>"), FA, "'bndbox'"),
    "entities truncated xml": (FA, truncate, FA, "not valid XML"),
    "entities width missing": (FA, replace("<width>500</width>", ""), FA, "'width'"),
    "entities object without box or flag": (FA, replace("<nobndbox>1</nobndbox>", "<nobndbox>0</nobndbox>"), FA,
                                            "'bndbox'"),
    "entities non-numeric name": (FA, replace("<name>283586</name>", "<name>shirts</name>"), FA, "'name'"),
    "entities image in two splits": ("flickr30k_entities/val.txt", lambda p: p.write_text("10002456\n1000092795\n"),
                                     "flickr30k_entities/val.txt", "'image id'"),
    "entities split id without sentences": ("flickr30k_entities/test.txt", lambda p: p.write_text("1000268201\n42\n"),
                                            "flickr30k_entities/test.txt", "'image id'"),
    "entities split id not a number": ("flickr30k_entities/test.txt", lambda p: p.write_text("x12\n"),
                                       "flickr30k_entities/test.txt", "not an image id"),
    "entities wrong split name": ("flickr30k_entities/dev.txt", lambda p: p.write_text("10002456\n"),
                                  "flickr30k_entities/dev.txt", "'split'"),
    "entities annotation without sentences": ("flickr30k_entities/Annotations/5.xml",
                                              lambda p: p.write_text("<annotation/>"),
                                              "flickr30k_entities/Annotations/5.xml", "'filename'"),
    # Visual Genome
    "genome negative width box": (VO, edit_json(setitem(0, "objects", 1, "w", -800)), VO, "'x/y/w/h'"),
    "genome box outside image": (VO, edit_json(setitem(0, "objects", 0, "h", 5000)), VO, "'x/y/w/h'"),
    "genome NaN coordinate": (VO, replace('"x": 241', '"x": NaN'), VO, "'x/y/w/h'"),
    "genome objects of unknown image": (VO, edit_json(setitem(1, "image_id", 77)), VO, "'image_id'"),
    "genome empty names": (VO, edit_json(setitem(1, "objects", 0, "names", [])), VO, "'names'"),
    "genome object id missing": (VO, edit_json(delitem(2, "objects", 0, "object_id")), VO, "'id'"),
    "genome attribute of unknown object": (VA, edit_json(setitem(1, "attributes", 0, "object_id", 5)), VA,
                                           "'object_id'"),
    "genome attributes not strings": (VA, edit_json(setitem(0, "attributes", 0, "attributes", ["green", 3])), VA,
                                      "'attributes'"),
    "genome zero width image": (VI, edit_json(setitem(0, "width", 0)), VI, "'width'"),
    "genome coco_id a string": (VI, edit_json(setitem(2, "coco_id", "262148")), VI, "'coco_id'"),
    "genome duplicate image": (VI, edit_json(lambda d: d.append(dict(d[0]))), VI, "'image_id'"),
    "genome truncated": (VO, truncate, VO, "not valid JSON"),
    "genome top level an object": (VI, edit_json(lambda d: {"images": d}, top=True), VI, "top level"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_exits_1_naming_file_and_field(name, data, capsys):
    target, corrupt, named_file, named = CORRUPTIONS[name]
    corrupt(data / target)
    rc, err = _validate(data, capsys)
    assert rc == 1, err
    lines = [line for line in err.splitlines() if str(data / named_file) in line]
    assert lines, err
    assert any(named in line for line in lines), err


# ---------------------------------------------------------------- feature stores

def _store(path: Path, image_ids: list[int]) -> None:
    with FeatureStoreWriter(path, feature_dim=4) as w:
        for i in image_ids:
            w.add(i, boxes=np.array([[0, 0, 10, 10], [5, 5, 20, 30]], np.float32),
                  features=np.ones((2, 4), np.float32), width=640, height=480)


def _vqa_only(root: Path) -> Path:
    shutil.copytree(FIXTURES / "vqa", root / "vqa")
    return root


def test_store_covering_every_image_is_clean(tmp_path, capsys):
    root = _vqa_only(tmp_path / "d")
    _store(root / "features", [1, 262148, 393225])
    rc, err = _validate(root, capsys)
    assert rc == 0 and "feature store features/: 3 images, 4-d features" in err


def test_symlinked_dataset_and_store_folders_are_followed_once(tmp_path, capsys):
    elsewhere = tmp_path / "disk"
    shutil.copytree(FIXTURES / "vqa", elsewhere / "vqa")
    _store(elsewhere / "features", [1, 262148, 393225])
    root = tmp_path / "d"
    root.mkdir()
    (root / "vqa").symlink_to(elsewhere / "vqa", target_is_directory=True)
    (root / "features").symlink_to(elsewhere / "features", target_is_directory=True)
    (root / "again").symlink_to(root, target_is_directory=True)  # a loop: read once, not forever
    rc, err = _validate(root, capsys)
    assert rc == 0, err
    assert "feature store features/: 3 images, 4-d features" in err
    assert len([line for line in err.splitlines() if line.startswith("VQA")]) == 3  # the three question files


def test_images_without_features_are_named(tmp_path, capsys):
    root = _vqa_only(tmp_path / "d")
    _store(root / "features", [1, 262148])
    rc, err = _validate(root, capsys)
    assert rc == 1
    assert ("v2_OpenEnded_mscoco_val2014_questions.json: record question_id 393225000: field 'image_id': "
            "image 393225") in err


def test_nan_features_are_reported(tmp_path, capsys):
    root = _vqa_only(tmp_path / "d")
    _store(root / "features", [1, 262148, 393225])
    feats = np.fromfile(root / "features" / "features.bin", dtype="<f4")
    feats[5] = np.nan
    feats.tofile(root / "features" / "features.bin")
    rc, err = _validate(root, capsys)
    assert rc == 1 and "features.bin" in err and "NaN" in err


def test_truncated_features_are_reported(tmp_path, capsys):
    root = _vqa_only(tmp_path / "d")
    _store(root / "features", [1, 262148, 393225])
    path = root / "features" / "features.bin"
    path.write_bytes(path.read_bytes()[:-8])
    rc, err = _validate(root, capsys)
    assert rc == 1 and "features.bin" in err and "truncated" in err


# ---------------------------------------------------------------- easy-VQA layout

def _easy(root: Path) -> Path:
    d = root / "easy"
    (d / "train" / "images").mkdir(parents=True)
    (d / "answers.txt").write_text("yes\nno\ncircle\n")
    (d / "train" / "questions.json").write_text(json.dumps([["is there a circle?", "yes", 0],
                                                           ["what shape is it?", "circle", 1]]))
    for i in (0, 1):
        (d / "train" / "images" / f"{i}.png").write_bytes(b"\x89PNG")
    return d


def test_easy_vqa_layout_is_found_and_checked(tmp_path, capsys):
    d = _easy(tmp_path)
    rc, err = _validate(tmp_path, capsys)
    assert rc == 0 and "easy-VQA train: 2 questions, 2 images" in err
    (d / "train" / "images" / "1.png").unlink()
    (d / "train" / "questions.json").write_text(json.dumps([["is there a circle?", "maybe", 0],
                                                           ["what shape?", "circle", 1]]))
    rc, err = _validate(tmp_path, capsys)
    assert rc == 1
    assert "questions.json: record [0]: field 'answer'" in err and "questions.json: record [1]: field 'image_id'" in err


def test_an_unusable_annotation_array_is_one_problem_not_one_per_question(data, capsys):
    edit_json(delitem("annotations"))(data / V2A)
    rc, err = _validate(data, capsys)
    assert rc == 1
    assert [line for line in err.splitlines() if "field" in line] == [f"{data / V2A}: field 'annotations': missing"]


# ---------------------------------------------------------------- two files that disagree; many problems

def _reannotate(root: Path, question_id: int, **fields: Any) -> None:
    path = root / "vqa" / "v2_mscoco_val2014_annotations.json"
    data = json.loads(path.read_text())
    for a in data["annotations"]:
        if a["question_id"] == question_id:
            a.update(fields)
    path.write_text(json.dumps(data))


def test_the_file_pointing_at_an_image_without_features_is_blamed(tmp_path, capsys):
    root = _vqa_only(tmp_path / "d")
    _store(root / "features", [1, 262148, 393225])
    _reannotate(root, 393225000, image_id=777)
    rc, err = _validate(root, capsys)
    assert rc == 1
    assert ("v2_mscoco_val2014_annotations.json: record question_id 393225000: field 'image_id': is 777, an image "
            "without region features, but the question in v2_OpenEnded_mscoco_val2014_questions.json says 393225"
            ) in err
    questions = root / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json"
    q = json.loads(questions.read_text())
    for item in q["questions"]:
        if item["question_id"] == 393225000:
            item["image_id"] = 888
    questions.write_text(json.dumps(q))
    _reannotate(root, 393225000, image_id=393225)
    rc, err = _validate(root, capsys)
    assert ("v2_OpenEnded_mscoco_val2014_questions.json: record question_id 393225000: field 'image_id': is 888, "
            "an image without region features, but its annotation in v2_mscoco_val2014_annotations.json says "
            "393225") in err
    _reannotate(root, 393225000, image_id=262148)
    item = next(i for i in q["questions"] if i["question_id"] == 393225000)
    item["image_id"] = 393225
    questions.write_text(json.dumps(q))
    rc, err = _validate(root, capsys)
    assert "which file is wrong cannot be told: both images have region features" in err


def test_every_problem_is_reported_up_to_fifty_per_file_then_counted(tmp_path, capsys):
    from vlmt.data.synth.cache import ensure_world

    world = ensure_world("tiny")
    root = tmp_path / "world"
    root.mkdir()
    for p in world.iterdir():
        (root / p.name).symlink_to(p)
    name = "v2_mscoco_train2014_annotations.json"
    (root / name).unlink()
    data = json.loads((world / name).read_text())
    for a in data["annotations"]:
        a["answer_type"] = "count"
    (root / name).write_text(json.dumps(data))
    rc, err = _validate(root, capsys)
    lines = [line for line in err.splitlines() if line.startswith(str(root / name))]
    assert rc == 1 and len(lines) == 51
    assert lines[-1] == f"{root / name}: ... and {len(data['annotations']) - 50} more problems in this file"
    assert all("answer_type" in line for line in lines[:50])


def test_genome_ids_are_looked_up_under_their_namespace(tmp_path, capsys):
    # Genome numbers its images from 1, as COCO does: with VQA image 1 in the store, Genome image 1
    # would pass unchecked. Under an offset the store must hold Genome's images at id + offset.
    root = _vqa_only(tmp_path / "d")
    shutil.copytree(FIXTURES / "visual_genome", root / "visual_genome")
    offset = 1_000_000_000
    _store(root / "features", [1, 262148, 393225, offset + 1, offset + 2])  # Genome image 3 is missing
    rc, err = _validate(root, capsys)
    # without the offset Genome image 1 is "found" (it is VQA's image 1: the collision), 2 is not
    assert rc == 1 and "record image_id 2: field 'image_id': image 2 " in err and "image_id 1:" not in err
    assert main(["data", "validate", str(root), "--genome-id-offset", str(offset)]) == 1
    err = capsys.readouterr().err
    assert "image_data.json: record image_id 3: field 'image_id': image 1000000003" in err, err
    _store(root / "features2", [offset + 3])
    assert validate_dir(root, genome_id_offset=offset).ok


def _world_with_unread_genome(tmp_path: Path) -> Path:
    """The tiny world's files (linked) plus a second Genome release whose image has no features."""
    import os

    from vlmt.data.synth.cache import ensure_world

    world = ensure_world("tiny")
    root = tmp_path / "root"
    root.mkdir()
    for p in sorted(world.rglob("*")):  # folders made, files linked (the walk enters no linked folder)
        if p.is_dir():
            (root / p.relative_to(world)).mkdir()
        else:
            os.symlink(p, root / p.relative_to(world))
    extra = root / "genome_extra"
    extra.mkdir()
    (extra / "image_data.json").write_text(json.dumps([{"image_id": 987654321, "width": 100, "height": 80}]))
    (extra / "objects.json").write_text(json.dumps([{"image_id": 987654321, "objects": [
        {"object_id": 1, "x": 1, "y": 2, "w": 10, "h": 20, "names": ["dog"]}]}]))
    return root


def test_training_validates_only_the_files_its_data_section_reads(tmp_path, capsys):
    """A folder whose Genome files have no features fails `vlmt data validate`, but does not stop
    training a config that never reads Genome; a config that reads them is refused, naming them."""
    from vlmt.data.datasets.genome import GenomeFilesConfig
    from vlmt.tasks.svlr_data import SVLRDataConfig

    root = _world_with_unread_genome(tmp_path)
    report = validate_dir(root)
    assert any("genome_extra/image_data.json: record image_id 987654321" in p and "no region features" in p
               for p in report.problems), report.problems
    out = tmp_path / "run"
    rc = main(["train", "tiny", "--out", str(out), "--set", f"data.root={root}", "--set", "train.max_iters=2",
               "--set", "train.eval_every=2", "--set", "train.checkpoint_every=2"])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err and (out / "checkpoints").is_dir(), err
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "validating" in log and "genome_extra" not in log
    # the build says what it does, in plain lines (no progress-bar control characters)
    assert "data: reading vqa: done, " in log and "data: vocabulary from the training text: done" in log, log
    assert "\r" not in log and "\x1b" not in log

    reads_it = SVLRDataConfig(root=str(root), tagger="lexicon", lemmatizer="rules", question_parser="heuristic",
                              genome=GenomeFilesConfig(image_data="genome_extra/image_data.json",
                                                       objects="genome_extra/objects.json", attributes=None))
    with pytest.raises(DataError, match=r"genome_extra/image_data\.json: record image_id 987654321.*no region"):
        reads_it.build(seed=0)
