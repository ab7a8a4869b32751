"""FER2013's label order, the canonical class names and the aliases that exports use for each class.

Labels are always mapped by class *name*: alphabetical folder order (angry, disgust, fear, happy,
neutral, sad, surprise) is not the FER2013 CSV order, and indexing folders would silently swap
neutral, sad and surprise (RECIPES.md, "FER2013 itself").
"""

from __future__ import annotations

# FER2013 CSV order: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral.
FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Spellings seen in exports of FER2013, FER+ and RAF-DB, mapped to the canonical name. Every dataset names its
# classes canonically (in its own order), so a model trained on one is matched to another by name.
CLASS_ALIASES: dict[str, str] = {
    "angry": "angry", "anger": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "happy": "happy", "happiness": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral",
    "contempt": "contempt",
}  # fmt: skip

# Evaluation subsets of a FER dataset; every sample carries one of these ids.
SPLITS: tuple[str, ...] = ("train", "public", "private", "test")
TRAIN, PUBLIC, PRIVATE, TEST = range(4)  # TEST: a test image whose Public/Private origin is unknown
USAGE_TO_SPLIT: dict[str, int] = {"Training": TRAIN, "PublicTest": PUBLIC, "PrivateTest": PRIVATE}


def canonical_class(name: str) -> str | None:
    """Return the canonical class for a folder or column name, or None if it is not an emotion."""
    return CLASS_ALIASES.get(name.strip().lower())
