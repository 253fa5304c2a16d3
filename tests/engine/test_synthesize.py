"""Stage 5: the template script writer."""

from __future__ import annotations

import pytest

from engine.backends.template import camera_from_prompt, detect_emotion
from engine.config import load_settings
from engine.stages.synthesize import Synthesize
from engine.types import QA, SceneInfo, Subject
from engine.vocabulary import CAMERAS, EMOTIONS
from engine.wording import MAX_PROMPT_WORDS


def scene(text: str, subject: str = "a person") -> SceneInfo:
    qa = (
        QA("What does the meme's text say?", text),
        QA("What is the main character?", subject),
        QA("Where is the main character?", "in the center"),
        QA("What are the colors of the scene?", "blue and white"),
        QA("How many panels does the meme have?", "one panel"),
    )
    return SceneInfo(qa, (Subject("face", (10, 10, 50, 50), 1.0),), ("blue", "white"), ((0, 0, 100, 100),), text)


@pytest.fixture(scope="module")
def synthesize() -> Synthesize:
    return Synthesize(load_settings().synthesize)


@pytest.mark.parametrize(
    ("text", "emotion"),
    [
        ("I DON'T KNOW WHAT THIS MEME IS FOR AND AT THIS POINT I'M TOO AFRAID TO ASK", "fear"),
        ("WAIT WHAT", "surprise"),
        ("THIS IS SPARTA", "anger"),
        ("IT'S FRIDAY, FINALLY", "joy"),
        ("ONE DOES NOT SIMPLY WALK INTO MORDOR", "smug"),
        ("PEPPERONI MUSHROOM PINEAPPLE", "disgust"),
        ("A GRAPH OF NOTHING", "neutral"),
    ],
)
def test_emotion_from_the_caption(text: str, emotion: str) -> None:
    assert detect_emotion(text) == emotion


def test_script_from_the_caption(synthesize: Synthesize) -> None:
    script = synthesize(scene("I'M TOO AFRAID TO ASK"))
    assert script.emotion == "fear"
    assert script.camera == "shake"
    assert script.meme_text == "I'M TOO AFRAID TO ASK"
    assert "trembling" in script.motion_prompt and script.motion_prompt.startswith("The person")
    assert "I'M TOO AFRAID TO ASK" in script.description and "I'M TOO AFRAID TO ASK" in script.explanation


def test_prompt_and_camera_win(synthesize: Synthesize) -> None:
    script = synthesize(scene("WAIT WHAT"), prompt="  slowly pull back   to reveal the room ")
    assert script.motion_prompt == "slowly pull back to reveal the room"
    assert script.camera == "zoom-out"
    assert synthesize(scene("WAIT WHAT"), prompt="pull back", camera="orbit").camera == "orbit"
    assert camera_from_prompt("make him dance") is None


def test_long_prompts_are_capped(synthesize: Synthesize) -> None:
    script = synthesize(scene(""), prompt="word " * 200)
    assert len(script.motion_prompt.split()) == MAX_PROMPT_WORDS


def test_no_subject_no_text(synthesize: Synthesize) -> None:
    script = synthesize(scene("", subject="no clear main character"))
    assert script.emotion == "neutral"
    assert script.motion_prompt.startswith("The scene")
    assert script.explanation.startswith("The picture carries the joke")


def test_every_real_meme_gets_a_valid_script(synthesize: Synthesize, ground_truth: dict) -> None:
    seen = set()
    for meme in ground_truth["memes"]:
        script = synthesize(scene(meme["text"]))
        assert script.emotion in EMOTIONS and script.camera in CAMERAS
        assert 0 < len(script.motion_prompt.split()) <= MAX_PROMPT_WORDS
        assert script == synthesize(scene(meme["text"]))  # deterministic
        seen.add(script.emotion)
    assert len(seen) >= 5  # real captions are not all read as one feeling
