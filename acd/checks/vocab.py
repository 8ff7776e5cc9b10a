"""The checks' vocabulary: colours, objects, sounds, places, sizes, camera moves and their wordings, gathered
once from the synthetic source's vocabulary, the grounded writer's lexicon (acd.lexicon, which the writer and
the checks share) and schemas/checks.yaml `facts`.

Its own module so the fact check, the motion and reference checks and the coverage check all read one table
without importing each other (acd.checks.factcheck imports acd.checks.motion, which reads this)."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from acd.checks.config import load_checks_spec


def word_rx(words: set[str]) -> re.Pattern:
    return re.compile(r"\b(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + r")\b")


@lru_cache(maxsize=1)
def fact_vocab() -> dict[str, Any]:
    import yaml

    from acd.lexicon import hallucination, lexicon, plural
    from acd.paths import SCHEMAS_DIR

    spec = load_checks_spec()["facts"]
    synth = yaml.safe_load((SCHEMAS_DIR / "synthetic" / "vocab.yaml").read_text())
    hv = hallucination()
    colours = set(spec["colours"]) | set(synth["colours"]) | set(hv["colours"])
    objects = set(spec["objects"]) | set(synth["categories"]) | set(hv["objects"])
    sounds = set(spec["sounds"]) | set(synth["audio"]["sounds"]) | set(hv["sounds"])
    actions = set(synth["video"]["actions"]) | set(synth["video"]["collide_actions"].values())
    plural_of = {o: plural(o) for o in objects}
    lex = lexicon()
    positions: dict[str, str] = {}
    for pos, phrase in lex["where"].items():
        positions[phrase] = pos
    for pos, phrases in spec["positions"].items():
        for p in phrases:
            positions[p] = pos
    for pos, phrases in lex.get("where_alt", {}).items():
        for phrase in phrases:
            positions[phrase] = pos
    for pos, phrase in lex["edge_note"].items():
        positions[phrase] = pos
    for pos, phrases in lex.get("edge_note_alt", {}).items():
        for phrase in phrases:
            positions[phrase] = pos
    for pos in lex["where"]:  # "at the top left", "the top-left ball" (the writer's short and ref forms)
        positions[f"at the {pos}"] = pos
        if " " in pos:
            positions[f"the {pos.replace(' ', '-')}"] = pos
    pos_rx = re.compile(r"\b(" + "|".join(sorted(map(re.escape, positions), key=len, reverse=True)) + r")\b")
    return {
        "colours": colours, "objects": objects, "sounds": sounds, "actions": actions,
        "sizes": set(spec["sizes"]) | {a for alts in lex.get("size_alt", {}).values() for a in alts},
        "size_norm": {a: k for k, alts in lex.get("size_alt", {}).items() for a in alts},
        "plural_of": plural_of,
        "singular_of": {p: o for o, p in plural_of.items()},
        "positions": positions, "pos_rx": pos_rx,
        "camera": {m: re.compile(rx, re.IGNORECASE) for m, rx in spec["camera"].items()},
        "numbers": {w: i for i, w in enumerate(lex["numbers"])},
        "sound_names": lex.get("sound_names", {}),
        "pitch": lex["pitch"],
        "action_rx": word_rx(actions),
        "nouns": set(objects) | set(plural_of.values()),
        "when_audio": {p: k for k, p in lex["when_audio"].items()}
                      | {p: k for k, ps in lex.get("when_audio_alt", {}).items() for p in ps},
        # "loud"/"soft" anywhere in a clause; the writer's other words for them ("a faint, high bell",
        # "quiet and shrill") only where they qualify the sound (not "out of the quiet")
        "loudness": {w: k for k, ws in lex.get("loudness_alt", {}).items() for w in ws},
        "loud_rx": re.compile(r"\b(loud|soft|(?:" + "|".join(
            sorted({w for ws in lex.get("loudness_alt", {}).values() for w in ws}) or ["(?!)"])
            + r")(?=,|\s+and\b|\s+[a-z]+-pitched\b|\s+(?:high|low|shrill|deep|mid-range)\b))\b"),
        "decor_words": {d: set(re.findall(r"[a-z]+", " ".join(alts).lower()))
                        for d, alts in lex.get("decor_alt", {}).items()},
        "audio_backgrounds": sorted(list(lex["audio_background"].values())
                                    + [p for ps in lex.get("audio_background_alt", {}).values() for p in ps], key=len, reverse=True),
    }
