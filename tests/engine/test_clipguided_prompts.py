"""The clipguided backend's prompts: one per panel for a multi-panel meme, else the motion prompt's beats."""

from __future__ import annotations

from pathlib import Path

from engine.backends.clipguided.prompts import MAX_PROMPTS, beats_of, prompts_for
from engine.config import load_settings
from engine.pipeline import Pipeline
from engine.stages.caption import panel_texts
from engine.types import QA, OcrResult, SceneInfo, Script, TextBlock

MOTION = (
    "The person breaks into a big smile and laughs, head bobbing as the camera drifts around them in slow parallax."
)


def scene(panels: tuple[tuple[int, int, int, int], ...], texts: tuple[str, ...] = (), who: str = "a cat") -> SceneInfo:
    return SceneInfo(
        qa=(QA("What is the main character?", who),), subjects=(), colors=(), panels=panels, meme_text=" ".join(texts),
        panel_texts=texts,
    )  # fmt: skip


def script(motion: str = MOTION) -> Script:
    return Script(
        description="A meme with one panel.", meme_text="", emotion="joy", motion_prompt=motion, camera="orbit",
        explanation="",
    )  # fmt: skip


def block(text: str, box: tuple[int, int, int, int]) -> TextBlock:
    return TextBlock(text=text, box=box, confidence=0.9, lines=())


def test_each_text_block_belongs_to_the_panel_holding_its_centre_or_the_nearest() -> None:
    panels = ((0, 0, 100, 50), (0, 50, 100, 100))
    ocr = OcrResult(
        blocks=(
            block("TOP", (10, 5, 90, 20)), block("BOTTOM", (10, 60, 90, 75)),
            block("ALSO\nBOTTOM", (10, 80, 90, 95)), block("OUTSIDE", (10, 101, 90, 110)),
        ),
    )  # fmt: skip
    assert panel_texts(panels, ocr) == ("TOP", "BOTTOM ALSO BOTTOM OUTSIDE")
    assert panel_texts(((0, 0, 100, 100),), OcrResult(blocks=())) == ("",)


def test_a_multi_panel_meme_gets_one_prompt_per_panel_and_the_user_prompt_leads() -> None:
    two = scene(((0, 0, 10, 10), (0, 10, 10, 20)), ("ME BEFORE COFFEE", "ME AFTER COFFEE"))
    assert prompts_for(two, script(), None) == ("a cat, ME BEFORE COFFEE", "a cat, ME AFTER COFFEE")
    assert prompts_for(two, script(), "  claymation ") == (
        "claymation, a cat, ME BEFORE COFFEE", "claymation, a cat, ME AFTER COFFEE",
    )  # fmt: skip
    # a second panel without text is no story: the motion prompt's beats instead
    lonely = scene(((0, 0, 10, 10), (0, 10, 10, 20)), ("ONLY ONE", ""))
    assert prompts_for(lonely, script(), None)[0].startswith("The person breaks into a big smile")


def test_a_single_panel_meme_moves_through_its_motion_prompts_stages_without_the_camera() -> None:
    one = scene(((0, 0, 10, 10),), ("HELLO",), who="a person")
    assert prompts_for(one, script(), None) == (
        "The person breaks into a big smile and laughs",
        "a person head bobbing",
    )
    assert beats_of("The cat blinks, then yawns; stretches, and sleeps.", "a cat") == [
        "The cat blinks", "a cat yawns", "a cat stretches", "a cat sleeps",
    ]  # fmt: skip
    many = script("A waves, B, C, D, E, F as the camera pans left.")
    assert len(prompts_for(one, many, None)) == MAX_PROMPTS
    assert prompts_for(one, script(""), None) == ("A meme with one panel.",), "never no prompt at all"


def test_a_real_two_panel_meme_gives_a_prompt_per_panel_with_its_own_words(shared_memes: Path) -> None:
    pipeline = Pipeline(load_settings())
    image = pipeline.intake((shared_memes / "rendered" / "mg_52_stop.jpg").read_bytes())
    ocr = pipeline.ocr(image)
    seen = pipeline.caption(pipeline.detext(image, ocr), ocr)
    prompts = prompts_for(seen, pipeline.synthesize(seen), None)
    assert len(seen.panels) == 2 and len(prompts) == 2, (seen.panels, prompts)
    assert "claustrophobic" in prompts[0].lower() and "Patrick" in prompts[1]
