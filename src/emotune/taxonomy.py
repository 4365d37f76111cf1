"""One canonical label vocabulary, so datasets with different spellings can be merged and compared.

`basic7` is the FER2013 set; `basic8` adds contempt (CK+, FER+). Scene sets have their own: `sentiment2` (positive,
negative: Twitter I, visual sentiment) and `mikels8` (Mikels et al. 2005: amusement, awe, contentment, excitement,
anger, disgust, fear, sadness: FI, EmoSet, ArtPhoto). Mikels' negative four share the canonical names of basic7
(anger -> angry, sadness -> sad, disgust, fear), so a face set and a scene set can be merged or compared by name.
Every label read from a dataset goes through :func:`canonical_label`; an unknown name is an error, never a silent
new class.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import LabelError

BASIC7: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
BASIC8: tuple[str, ...] = BASIC7 + ("contempt",)
SENTIMENT2: tuple[str, ...] = ("positive", "negative")
MIKELS8: tuple[str, ...] = ("amusement", "awe", "contentment", "excitement", "angry", "disgust", "fear", "sad")
TAXONOMIES: dict[str, tuple[str, ...]] = {"basic7": BASIC7, "basic8": BASIC8, "sentiment2": SENTIMENT2, "mikels8": MIKELS8}
# the order `labels: auto` lists the labels found in a dataset in
CANONICAL_ORDER: tuple[str, ...] = BASIC8 + tuple(c for c in MIKELS8 if c not in BASIC8) + SENTIMENT2

SYNONYMS: dict[str, str] = {
    "anger": "angry", "angry": "angry", "an": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear", "fe": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "ha": "happy",
    "neutral": "neutral", "neutrality": "neutral", "calm": "neutral", "ne": "neutral",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
    "contempt": "contempt", "contemptuous": "contempt", "co": "contempt",
    # sentiment (Twitter I, visual sentiment sets)
    "positive": "positive", "pos": "positive", "+": "positive",
    "negative": "negative", "neg": "negative", "-": "negative",
    # Mikels' eight (FI, EmoSet, ArtPhoto); anger/sadness/disgust/fear are above
    "amusement": "amusement", "amused": "amusement", "amusing": "amusement", "fun": "amusement",
    "awe": "awe", "awed": "awe", "awesome": "awe", "wonder": "awe",
    "contentment": "contentment", "content": "contentment", "contented": "contentment", "serenity": "contentment",
    "excitement": "excitement", "excited": "excitement", "exciting": "excitement", "excite": "excitement",
}

# FER2013's integer codes (the `emotion` column of fer2013.csv).
FER2013_CODES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# FER+ vote columns, in file order.
FERPLUS_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)


def canonical_label(name: str, where: str = "label") -> str:
    """Map a label spelling to its canonical name, or raise a LabelError naming `where`."""
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    if key in SYNONYMS:
        return SYNONYMS[key]
    raise LabelError(where, f"unknown emotion label {name!r}; known: {', '.join(CANONICAL_ORDER)} (and usual synonyms)")


def canonical_labels(names: Iterable[str]) -> set[str]:
    """Names as given by a user (`--drop-labels Fear,anger`), canonical where they are known emotions: a filter then
    matches the data's canonical labels whatever the spelling. Unknown names are kept as they are."""
    out = set()
    for n in names:
        try:
            out.add(canonical_label(n))
        except LabelError:
            out.add(str(n))
    return out


def resolve_labels(spec: str | Sequence[str], present: Iterable[str] = ()) -> tuple[str, ...]:
    """Label order for a model: a taxonomy name, an explicit list, or `auto` (those present, canonical order)."""
    if isinstance(spec, str):
        if spec in TAXONOMIES:
            return TAXONOMIES[spec]
        if spec != "auto":
            return resolve_labels([s for s in spec.split(",") if s.strip()])
        seen = set(present)
        ordered = [c for c in CANONICAL_ORDER if c in seen]
        if not ordered:
            raise LabelError("labels", "no labels present in the data")
        return tuple(ordered)
    labels = tuple(canonical_label(s, "labels") for s in spec)
    if len(set(labels)) != len(labels):
        raise LabelError("labels", f"duplicate labels in {list(spec)}")
    return labels
