"""The clipguided backend's prompts: one per panel for a multi-panel meme, else the script's beats.

The paper animates a story by moving from one prompt to the next. A multi-panel meme already is one:
each panel's text (what the caption stage read in it) is a beat, said of the meme's subject. A
single-panel meme's story is its motion prompt, split into the stages it names ("smiles, then laughs,
head bobbing"); the camera's part is left out, since CLIP steers pixels, not a camera. The user's own
words, when given, lead every prompt.
"""

from __future__ import annotations

import re

from engine.types import SceneInfo, Script

MAX_PROMPTS = 4  # more beats than this in a 2-3 s loop flicker instead of telling a story
MAX_CHARS = 200  # CLIP reads 77 tokens; longer words are cut by its tokenizer anyway
CAMERA = re.compile(r"\s+as the camera\b.*$", re.IGNORECASE)  # "... as the camera pushes in on them."
CLAUSES = re.compile(r",\s*(?:and|then)\s+|\s+then\s+|;\s*|,\s*")
SUBJECT_QUESTION = "What is the main character?"


def prompts_for(scene: SceneInfo, script: Script, user_prompt: str | None) -> tuple[str, ...]:
    """The prompts the frames move through, in order (at least one)."""
    subject = _subject(scene)
    lead = f"{' '.join(user_prompt.split())}, " if user_prompt and user_prompt.strip() else ""
    texts = [t for t in scene.panel_texts if t.strip()]
    if len(scene.panels) > 1 and len(texts) > 1:
        beats = [f"{subject}, {text}" for text in texts]
    else:
        beats = beats_of(script.motion_prompt, subject)
    prompts = [_short(lead + beat) for beat in beats[:MAX_PROMPTS]]
    return tuple(prompts) or (_short(lead + (script.description or subject)),)


def beats_of(motion_prompt: str, subject: str) -> list[str]:
    """The motion prompt's stages: its clauses without the camera, each after the first said of the subject."""
    words = CAMERA.sub("", " ".join(motion_prompt.split())).rstrip(" .")
    clauses = [c.strip(" .") for c in CLAUSES.split(words) if c.strip(" .")]
    if not clauses:
        return []
    return [clauses[0]] + [f"{subject} {clause}" for clause in clauses[1:]]


def _subject(scene: SceneInfo) -> str:
    answer = next((qa.answer for qa in scene.qa if qa.question == SUBJECT_QUESTION), "")
    return answer if answer and answer != "no clear main character" else "the picture"


def _short(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1].rstrip() + "…"
