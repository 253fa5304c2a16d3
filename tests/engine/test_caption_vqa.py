"""The model-backed caption and OCR backends on tiny random BLIP-2 and Florence-2 folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.backends.florence2 import (
    DESCRIBE_QUESTION,
    Florence2,
    Florence2Caption,
    Florence2Ocr,
    parse_objects,
    parse_ocr_with_region,
    plain_text,
)
from engine.config import load_settings, replace
from engine.runtime.models import ModelPool
from engine.stages.caption import Caption
from engine.stages.detext import Detext
from engine.stages.intake import Intake
from engine.stages.ocr import Ocr
from engine.types import CleanImage, DecodedImage, OcrResult, SceneInfo, TextBlock, TextLine

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monday-cat.png"


@pytest.fixture(scope="module")
def meme() -> tuple[DecodedImage, OcrResult, CleanImage]:
    """The example meme, read and de-texted by the CPU stages."""
    settings = load_settings()
    image = Intake(settings.intake)(EXAMPLE.read_bytes())
    ocr = Ocr(settings.ocr, ModelPool(settings.runtime))(image)
    return image, ocr, Detext(settings.detext)(image, ocr)


def caption_with(**changes: object) -> Caption:
    settings = replace(load_settings(), caption=changes, runtime={"device": "cpu"})
    return Caption(settings.caption, ModelPool(settings.runtime))


def test_blip2_asks_every_question_in_one_generate_call(
    tiny_blip2: Path, meme: tuple[DecodedImage, OcrResult, CleanImage]
) -> None:
    _, ocr, clean = meme
    questions = load_settings().caption.questions
    caption = caption_with(backend="blip2", blip2_model=str(tiny_blip2), max_new_tokens=5)
    model, _processor, _device, _dtype = caption.model._load()
    calls: list[tuple[int, ...]] = []
    real_generate = model.generate

    def counting_generate(**inputs: object) -> object:
        calls.append(tuple(inputs["input_ids"].shape))  # type: ignore[attr-defined]
        return real_generate(**inputs)

    model.generate = counting_generate
    try:
        scene = caption(clean, ocr)
    finally:
        del model.generate
    assert len(calls) == 1 and calls[0][0] == len(questions)
    assert isinstance(scene, SceneInfo)
    asked = [qa.question for qa in scene.qa]
    assert set(questions) <= set(asked) and len(asked) == len(set(asked))
    assert all(qa.answer and len(qa.answer) <= 200 for qa in scene.qa)
    # the CPU analysis stays: the same subjects, colours, panels and meme text as the "none" backend
    cpu = caption_with(backend="none")(clean, ocr)
    assert (scene.subjects, scene.colors, scene.panels, scene.meme_text) == (
        cpu.subjects, cpu.colors, cpu.panels, cpu.meme_text,
    )  # fmt: skip
    cpu_only = {qa.question: qa.answer for qa in cpu.qa if qa.question not in questions}
    assert cpu_only and all(qa.answer == cpu_only[qa.question] for qa in scene.qa if qa.question in cpu_only)


def test_blip2_needs_questions(tiny_blip2: Path) -> None:
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="caption.questions"):
        caption_with(backend="blip2", blip2_model=str(tiny_blip2), questions=[])


def test_florence2_caption_adds_a_detailed_description(
    tiny_florence2: Path, meme: tuple[DecodedImage, OcrResult, CleanImage]
) -> None:
    _, ocr, clean = meme
    scene = caption_with(backend="florence2", florence2_model=str(tiny_florence2), max_new_tokens=30)(clean, ocr)
    assert isinstance(scene, SceneInfo)
    described = [qa for qa in scene.qa if qa.question == DESCRIBE_QUESTION]
    assert len(described) == 1 and described[0].answer
    assert "<loc_" not in described[0].answer and "</s>" not in described[0].answer
    assert scene.meme_text == " ".join(ocr.text.split())


def test_florence2_ocr_gives_the_engines_types_from_a_real_run(
    tiny_florence2: Path, meme: tuple[DecodedImage, OcrResult, CleanImage]
) -> None:
    image, _, _ = meme
    settings = replace(
        load_settings(),
        ocr={"backend": "florence2", "florence2_model": str(tiny_florence2), "max_new_tokens": 40, "min_height": 1},
        runtime={"device": "cpu"},
    )
    ocr = Ocr(settings.ocr, ModelPool(settings.runtime))
    result = ocr(image)
    assert isinstance(result, OcrResult)
    assert all(isinstance(block, TextBlock) for block in result.blocks)
    # what the stage kept is exactly what the parser makes of the model's raw output, filtered
    assert isinstance(ocr.backend, Florence2Ocr)
    florence: Florence2 = ocr.backend.model
    (raw,) = florence.run(image.pixels, ("<OCR_WITH_REGION>",), max_new_tokens=40)
    assert "<loc_" in raw  # the random model's garbage still holds location tokens to parse
    parsed = parse_ocr_with_region(raw, image.width, image.height)
    assert {line.text for line in result.lines} <= {line.text for line in parsed}
    for line in parsed:
        assert isinstance(line, TextLine) and len(line.polygon) == 4
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 <= x1 <= image.width and 0 <= y0 <= y1 <= image.height


def test_parse_ocr_with_region_on_a_known_output() -> None:
    text = (
        "</s><s>ME ON<loc_100><loc_50><loc_900><loc_50><loc_900><loc_150><loc_100><loc_150>"
        "MONDAY <loc_200> <loc_800><loc_800><loc_800><loc_800><loc_950><loc_200><loc_950>"
        "<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>"  # a quad without text: skipped
        "trailing words with no box</s><pad><pad>"
    )
    first, second = parse_ocr_with_region(text, 1000, 500)
    assert first.text == "ME ON" and second.text == "MONDAY"
    assert first.polygon == ((100.5, 25.25), (900.5, 25.25), (900.5, 75.25), (100.5, 75.25))
    assert first.box == (100, 25, 902, 77) and first.confidence == 1.0
    assert second.box == (200, 400, 802, 477)
    assert parse_ocr_with_region("</s>no text here</s>", 100, 100) == []


def test_parse_objects_orders_labels_by_area() -> None:
    text = "</s>mug<loc_10><loc_10><loc_20><loc_20>cat<loc_100><loc_100><loc_900><loc_900>desk<loc_0><loc_0></s>"
    assert parse_objects(text, 640, 480) == ["cat", "mug"]
    assert plain_text("</s><s>A cat <loc_5>on a desk.</s><pad>") == "A cat on a desk."


def test_florence2_ocr_and_caption_share_one_model(tiny_florence2: Path) -> None:
    settings = replace(
        load_settings(),
        ocr={"backend": "florence2", "florence2_model": str(tiny_florence2)},
        caption={"backend": "florence2", "florence2_model": str(tiny_florence2)},
        runtime={"device": "cpu"},
    )
    pool = ModelPool(settings.runtime)
    ocr, caption = Ocr(settings.ocr, pool), Caption(settings.caption, pool)
    assert isinstance(ocr.backend, Florence2Ocr) and isinstance(caption.model, Florence2Caption)
    assert ocr.backend.model is caption.model.model  # one model in the pipeline's pool, loaded once
    other = Ocr(settings.ocr, ModelPool(settings.runtime))  # another pipeline holds its own
    assert isinstance(other.backend, Florence2Ocr) and other.backend.model is not ocr.backend.model


def test_model_answers_replace_the_cpu_answer_to_the_same_question() -> None:
    from engine.stages.caption import merge_answers
    from engine.types import QA

    base = (QA("a?", "cpu a"), QA("b?", "cpu b"))
    assert merge_answers(base, (QA("b?", "model b"), QA("c?", "model c"))) == (
        QA("a?", "cpu a"), QA("b?", "model b"), QA("c?", "model c"),
    )  # fmt: skip


def test_blip2_answers_are_one_capped_line() -> None:
    from engine.backends.blip2 import clean_answer

    assert clean_answer("  a\n cat  ") == "a cat"
    assert len(clean_answer("word " * 100)) == 200
    assert clean_answer("   ") == "no answer"
