"""Static lists the simulator serves: TTS speakers, restyle effects, effect templates."""

from __future__ import annotations

from typing import Any, Final

#: The official sample list of TTS speakers (REFERENCE.md 5.6), in its order.
TTS_SPEAKERS: Final = tuple(
    {"speaker_id": sid, "name": name}
    for sid, name in (
        ("7", "Harper"), ("8", "Ava"), ("3", "Isabella"), ("9", "Sophia"), ("1", "Emily"),
        ("5", "Chloe"), ("10", "Julia"), ("11", "Mason"), ("12", "Jack"), ("4", "Liam"),
        ("2", "James"), ("13", "Oliver"), ("6", "Adrian"), ("14", "Ethan"), ("Auto", "Auto"),
    )
)

#: Restyle effects. INVENTED: PixVerse does not publish this list or its shape (5.10).
RESTYLES: Final = tuple(
    {"restyle_id": rid, "name": name}
    for rid, name in (
        (17, "Clay"), (18, "Anime"), (19, "Comic"), (20, "Cyberpunk"), (21, "Watercolor"),
        (22, "Oil painting"), (23, "Pixel art"), (24, "Sketch"), (25, "3D cartoon"),
        (26, "Vintage film"), (27, "Neon"), (28, "Origami"),
    )
)

#: Effect templates. INVENTED apart from the first id (an official example, 5.3); the item
#: shape behind ``effect_items`` is unknown (REFERENCE.md 12.8).
EFFECT_TEMPLATES: Final = tuple(
    {"template_id": tid, "name": name, "type": kind}
    for tid, name, kind in (
        (302325299692608, "Hug", 1), (302325299692609, "Kiss", 1),
        (302325299692610, "Muscle surge", 1), (302325299692611, "Venom", 1),
        (302325299692612, "Zombie", 1), (302325299692613, "Squish", 1),
        (302325299692614, "Inflate", 1), (302325299692615, "Melt", 1),
        (377378608924544, "Cartoon portrait", 2), (377378608924545, "Toy figure", 2),
        (377378608924546, "Pixel portrait", 2),
    )
)

RESTYLE_IDS: Final = frozenset(r["restyle_id"] for r in RESTYLES)
TTS_SPEAKER_IDS: Final = frozenset(s["speaker_id"] for s in TTS_SPEAKERS) | {"auto"}


def page(items: tuple[dict[str, Any], ...], number: int, size: int) -> list[dict[str, Any]]:
    """Items on page ``number`` (1-based) of ``size`` items."""
    start = (number - 1) * size
    return [dict(item) for item in items[start:start + size]]
