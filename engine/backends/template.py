"""synthesize = "template": the offline, deterministic script writer (and every other writer's fallback)."""

from __future__ import annotations

import re

from engine.config import SynthesizeSettings
from engine.types import SceneInfo, Script
from engine.vocabulary import Camera, Emotion
from engine.wording import MAX_PROMPT_WORDS, cap_words

# Words that give a caption its feeling. Each word counts once; the first STRONG words of each list
# name the feeling outright and count three times; ties go to the earlier emotion.
EMOTION_WORDS: dict[Emotion, tuple[str, ...]] = {
    "surprise": ("omg", "wow", "shocked", "surprise", "what", "wait", "suddenly", "realize", "realized",
                 "unexpected", "plot", "twist", "whoa", "huh"),
    "anger": ("angry", "hate", "mad", "rage", "stop", "enough", "furious", "annoying", "why", "ugh",
              "again", "seriously", "kill", "fight", "sparta", "never"),
    "fear": ("afraid", "scared", "fear", "panic", "panik", "terrified", "nervous", "anxiety", "help",
             "monday", "deadline", "exam", "boss", "dentist", "drowning"),
    "sadness": ("sad", "cry", "crying", "alone", "miss", "lost", "lose", "sorry", "tears", "broke",
                "nobody", "forever", "winter", "dead", "rip", "grave"),
    "joy": ("happy", "yay", "celebrate", "party", "win", "love", "friday", "weekend", "finally", "great",
            "best", "awesome", "yes", "fun", "dance", "success", "made", "kalm"),
    "love": ("heart", "crush", "cute", "adorable", "bae", "darling", "kiss", "wholesome"),
    "smug": ("obviously", "genius", "smart", "cool", "actually", "chosen", "simply", "one", "does",
             "deal", "sunglasses", "money", "rich", "expert"),
    "confusion": ("confused", "understand", "wonder", "question", "how", "idea", "know", "think", "maybe",
                  "meme", "math", "explain"),
    "disgust": ("gross", "ew", "eww", "disgusting", "pineapple", "yuck", "nasty", "cringe"),
}  # fmt: skip
# Words in a user's prompt that ask for a camera move.
CAMERA_WORDS: dict[Camera, tuple[str, ...]] = {
    "zoom-in": ("zoom in", "zoom-in", "push in", "closer", "close up", "zoom"),
    "zoom-out": ("zoom out", "zoom-out", "pull back", "pull out", "reveal"),
    "pan-left": ("pan left", "pan-left", "to the left"),
    "pan-right": ("pan right", "pan-right", "to the right"),
    "pan-up": ("pan up", "pan-up", "upward", "rise"),
    "pan-down": ("pan down", "pan-down", "downward", "fall"),
    "shake": ("shake", "shaking", "earthquake", "tremble", "vibrate", "rumble", "angry", "rage"),
    "orbit": ("orbit", "circle", "around", "spin", "parallax", "3d"),
}
# The camera move that best sells each feeling.
EMOTION_CAMERA: dict[Emotion, Camera] = {
    "surprise": "zoom-in", "anger": "shake", "fear": "shake", "sadness": "zoom-in", "joy": "orbit",
    "love": "zoom-in", "smug": "orbit", "confusion": "zoom-out", "disgust": "zoom-out", "neutral": "orbit",
}  # fmt: skip
# What the subject does for each feeling, in the words a person would write (the acting backend performs
# these: engine/backends/acting/acts.py).
EMOTION_ACTION: dict[Emotion, str] = {
    "surprise": "raises their eyebrows, eyes wide, and their jaw drops",
    "anger": "frowns hard and shakes their head, yelling",
    "fear": "stares wide-eyed with worried brows, trembling",
    "sadness": "lets their head droop, brows knit and the corners of the mouth down",
    "joy": "breaks into a big smile and laughs, head bobbing",
    "love": "smiles softly with a slow, dreamy head tilt",
    "smug": "smirks and raises one eyebrow, leaning back",
    "disgust": "grimaces and pulls their head away",
    "confusion": "tilts their head and raises one eyebrow, puzzled",
    "neutral": "blinks, breathes and glances around calmly",
}  # fmt: skip
CAMERA_PHRASE: dict[Camera, str] = {
    "zoom-in": "the camera pushes in on them", "zoom-out": "the camera pulls back to take it all in",
    "pan-left": "the camera pans left", "pan-right": "the camera pans right",
    "pan-up": "the camera tilts up", "pan-down": "the camera tilts down",
    "shake": "the whole frame shakes", "orbit": "the camera drifts around them in slow parallax",
}  # fmt: skip
STRONG = 4


class TemplateWriter:
    """Writes the script from the caption's words and the QA answers; the same scene, the same script."""

    name = "template"

    def __init__(self, settings: SynthesizeSettings | None = None, *, api_key: str | None = None) -> None:
        self.settings = settings

    def __call__(self, scene: SceneInfo, *, prompt: str | None, camera: Camera | None = None) -> Script:
        """The offline script: words from the caption and the QA answers, a camera move that fits the feeling."""
        # 1. the feeling: the user's words first, then the caption's
        emotion = detect_emotion(prompt or "") if prompt else "neutral"
        if emotion == "neutral":
            emotion = detect_emotion(scene.meme_text)
        # 2. the camera: asked for, named in the prompt, or the one that sells the feeling
        camera = camera or (camera_from_prompt(prompt) if prompt else None) or EMOTION_CAMERA[emotion]
        # 3. the words
        subject = _answer(scene, "What is the main character?")
        place = _answer(scene, "Where is the main character?")
        colors = _answer(scene, "What are the colors of the scene?")
        panels = _answer(scene, "How many panels does the meme have?")
        who = "the scene" if subject.startswith("no clear") else _lead(subject)
        if subject[:1].isdigit():  # "2 people, one of them most prominent": the verbs below are singular
            who = f"each of {who}"
        description = f"A meme with {panels}; the main character is {subject}, {place}; mostly {colors}."
        if scene.meme_text:
            description += f' The caption reads: "{scene.meme_text}".'
        motion_prompt = prompt or f"{who[0].upper()}{who[1:]} {EMOTION_ACTION[emotion]} as {CAMERA_PHRASE[camera]}."
        explanation = explain(scene.meme_text, emotion, camera)
        return Script(
            description=description,
            meme_text=scene.meme_text,
            emotion=emotion,
            motion_prompt=cap_words(motion_prompt, MAX_PROMPT_WORDS),
            camera=camera,
            explanation=explanation,
        )


def detect_emotion(text: str) -> Emotion:
    """The emotion whose words the text uses most; "neutral" when none."""
    words = set(re.findall(r"[a-z']+", text.lower().replace("’", "'")))
    scores = {
        emotion: len(words.intersection(vocab)) + 2 * len(words.intersection(vocab[:STRONG]))
        for emotion, vocab in EMOTION_WORDS.items()
    }
    best = max(scores, key=lambda e: scores[e])  # dicts keep order, so ties favour the earlier emotion
    if text.count("!") >= 2 and scores[best] == 0:
        return "surprise"
    return best if scores[best] > 0 else "neutral"


def camera_from_prompt(prompt: str) -> Camera | None:
    """The camera move a prompt names, if any (the longest matching phrase wins)."""
    lowered = prompt.lower()
    hits = [(len(p), cam) for cam, phrases in CAMERA_WORDS.items() for p in phrases if p in lowered]
    return max(hits)[1] if hits else None


def explain(meme_text: str, emotion: Emotion, camera: Camera) -> str:
    """Why the motion fits the joke, in one or two sentences."""
    feeling = {"neutral": "its deadpan tone"}.get(emotion, f"its {emotion}")
    if not meme_text:
        return f"The picture carries the joke on its own; a {camera} move plays up {feeling} without hiding it."
    return (
        f'The caption "{cap_words(meme_text, 24)}" sets the mood; a {camera} move exaggerates {feeling} '
        "while the text stays still and readable, like a reaction GIF."
    )


def _answer(scene: SceneInfo, question: str) -> str:
    return next((qa.answer for qa in scene.qa if qa.question == question), "unknown")


def _lead(subject: str) -> str:
    """'a person' -> 'the person'; '2 people, one of them most prominent' -> 'the people'."""
    head = subject.split(",")[0]
    if head[:1].isdigit():
        return "the " + head.split(" ", 1)[1]
    return "the " + head.split(" ", 1)[1] if head.startswith(("a ", "an ")) else head
