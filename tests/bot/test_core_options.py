"""bot.core.options: every /animate option, the errors' usage sentences, prompts with = and unicode."""

from __future__ import annotations

import pytest

from bot.core.options import (
    CAMERAS,
    FPS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    AnimateRequest,
    OptionError,
    parse_animate,
    parse_limits,
)


def test_empty_text_is_no_prompt_and_no_options() -> None:
    assert parse_animate("") == AnimateRequest()
    assert parse_animate("   \n ") == AnimateRequest()


def test_every_option_is_read_and_the_rest_is_the_prompt_in_order() -> None:
    request = parse_animate("the cat motion=high turns camera=zoom-in its head seed=42 fps=12 slowly")
    assert request.prompt == "the cat turns its head slowly"
    assert request.options == {
        "motion": "high", "camera": "zoom-in", "seed": 42, "fps": 12, "prompt": "the cat turns its head slowly"
    }  # fmt: skip


@pytest.mark.parametrize("camera", CAMERAS)
def test_every_camera_move(camera: str) -> None:
    assert parse_animate(f"camera={camera}").options == {"camera": camera}


def test_keys_and_keyword_values_are_case_insensitive() -> None:
    assert parse_animate("MOTION=Low Camera=PAN-LEFT SeEd=0 FPS=50").options == {
        "motion": "low", "camera": "pan-left", "seed": 0, "fps": 50
    }  # fmt: skip


def test_bounds_are_inclusive() -> None:
    assert parse_animate(f"seed={MAX_SEED} fps={FPS[0]}").options == {"seed": MAX_SEED, "fps": FPS[0]}


def test_equals_inside_words_and_unknown_keys_stay_in_the_prompt() -> None:
    request = parse_animate("e=mc² style=vaporwave x==y motionless=yes")
    assert request.prompt == "e=mc² style=vaporwave x==y motionless=yes" and set(request.options) == {"prompt"}


def test_unicode_prompt_is_kept() -> None:
    request = parse_animate("кот танцует 🐱 ✨ motion=high")
    assert request.prompt == "кот танцует 🐱 ✨" and request.options["motion"] == "high"


@pytest.mark.parametrize(
    ("text", "named", "allowed"),
    [
        ("motion=medium", "motion=medium", "motion=low or motion=high"),
        ("camera=spin", "camera=spin", "orbit"),
        ("camera=", "camera=", "zoom-in"),
        ("seed=-1", "seed=-1", str(MAX_SEED)),
        (f"seed={MAX_SEED + 1}", "seed=", str(MAX_SEED)),
        ("seed=abc", "seed=abc", "whole number"),
        ("seed=٣", "seed=٣", "whole number"),  # a non-ASCII digit
        ("fps=0", "fps=0", "1 to 50"),
        ("fps=51", "fps=51", "1 to 50"),
        ("fps=12.5", "fps=12.5", "1 to 50"),
    ],
)
def test_bad_values_name_the_option_and_the_allowed_values(text: str, named: str, allowed: str) -> None:
    with pytest.raises(OptionError) as caught:
        parse_animate(f"make it dance {text}")
    message = caught.value.message
    assert named in message and allowed in message and message.endswith(".") and "\n" not in message


def test_a_repeated_option_is_refused_not_silently_overridden() -> None:
    with pytest.raises(OptionError, match="motion twice"):
        parse_animate("motion=low motion=high")


def test_a_long_value_is_not_echoed_in_full() -> None:
    with pytest.raises(OptionError) as caught:
        parse_animate("camera=" + "x" * 1000)
    assert len(caught.value.message) < 200


def test_prompt_length_limit() -> None:
    assert parse_animate("a" * MAX_PROMPT_CHARS).prompt == "a" * MAX_PROMPT_CHARS
    with pytest.raises(OptionError, match="too long"):
        parse_animate("a" * (MAX_PROMPT_CHARS + 1))


def test_button_helpers_return_new_requests() -> None:
    request = parse_animate("motion=low seed=7 wave")
    more = request.more_motion()
    assert more.options == {"motion": "high", "seed": 7, "prompt": "wave"} and request.options["motion"] == "low"
    assert request.with_seed(None).options == {"motion": "low", "prompt": "wave"}
    assert request.with_seed(99).options["seed"] == 99
    with pytest.raises(OptionError):
        request.with_seed(-5)


def test_from_options_round_trips_and_checks_again() -> None:
    request = parse_animate("camera=orbit fps=8 seed=3 dance like nobody=watching")
    assert request == AnimateRequest("dance like nobody=watching", camera="orbit", seed=3, fps=8)
    assert AnimateRequest.from_options(request.options) == request
    for bad in ({"fps": 500}, {"fps": "8"}, {"seed": True}, {"motion": "wild"}, {"camera": ""}, {"prompt": 3},
                {"prompt": "a" * (MAX_PROMPT_CHARS + 1)}, {"speed": 2}):  # fmt: skip
        with pytest.raises(OptionError):
            AnimateRequest.from_options(bad)


def test_a_seed_with_thousands_of_digits_is_a_usage_sentence_not_a_crash() -> None:
    with pytest.raises(OptionError, match="seed="):
        parse_animate("seed=" + "9" * 5000)


def test_parse_limits() -> None:
    assert parse_limits("user_jobs=10 QUEUE_MAX=200") == {"user_jobs": 10, "queue_max": 200}
    for bad in ("", "user_jobs=0", "user_jobs=ten", "speed=3", "user_jobs"):
        with pytest.raises(OptionError):
            parse_limits(bad)


@pytest.mark.parametrize("value", ["٣", "３", "²", "1_0", "+3", " 3", "9" * 5000], ids=lambda v: repr(v[:8]))
def test_parse_limits_takes_only_ascii_digits_and_never_crashes(value: str) -> None:
    """str.isdigit() is true of Arabic-Indic, fullwidth and superscript digits; int() of 5000 digits raises."""
    with pytest.raises(OptionError, match="user_jobs must be a whole number from 1 to 1000000000"):
        parse_limits(f"user_jobs={value}")


def test_parse_limits_bounds() -> None:
    assert parse_limits("user_jobs=1 queue_max=1000000000") == {"user_jobs": 1, "queue_max": 10**9}
    assert parse_limits("user_jobs=0007") == {"user_jobs": 7}
    with pytest.raises(OptionError):
        parse_limits("queue_max=1000000001")
