"""Instructions and chosen captions per instruction type, written from Facts with phrasing data.

Code decides WHICH facts a caption of a given type covers and in what priority; prompts/grounded/*.yaml
decides HOW they are worded. A caption is built as prioritised units (see fit.py) and then fitted to the
length constraint, so the chosen caption satisfies acd.checks.length exactly.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

from acd.checks.length import count_words
from acd.grounded.facts import Facts, article, fmt_t, join_and, objects_list, relation
from acd.grounded.fit import Target, choose_words, merge_sentences
from acd.grounded.phrasing import Phrasing, Tpl, cap, lower_first, pick_from
from acd.taxonomy import LengthConstraint

STRICT_NAMING = ("appearance", "position")
# sentence shapes written for a moving object (they say its start, path, end or moment themselves); any other
# shape that gives a mover's place gets the place with its moment (Writer._placed_at_start)
_MOVER_GROUPS = {"obj_intro_video", "obj_intro_late", "obj_action", "obj_end", "narr_motion", "relation_start",
                 "camera_subject_leaves",
                 "event_appear", "event_appear_start", "event_leave", "event_collide", "event_other", "motion"}
_NO_LINK = {"listen", "hark", "hear", "see", "look", "watch", "behold", "notice", "glance", "peek", "off", "here",
            "there", "and", "so", "now"}  # first words a poem line cannot take "And so" before
_INTRO_TYPES = ("brief", "detail", "theme", "instance")  # unit 0 sets the scene
_DEF = "#def"
_DEF_CACHE: dict[int, tuple[tuple, tuple]] = {}
_INDEF_ONLY = re.compile(r"\b(?:[Tt]here (?:is|\[is)|[Hh]ere is|[Tt]here \[|one sees|we find|finds|the viewer finds|[Ll]ook, there)")
FALLBACKS = {"prose": 0, "poem": 0}  # how often no phrasing met a word target (the nearest caption was written)


@dataclass
class Plan:
    """What an instruction asks for, resolved against the grounding (ids, so corrupted Facts map too)."""

    itype: str
    target_ids: list[str] = field(default_factory=list)
    excluded_id: str | None = None
    theme: str | None = None
    viewpoint: str | None = None
    viewer_id: str | None = None
    instruction: str | None = None  # the text the coverage check reads the named things from


class Writer:
    def __init__(self, ph: Phrasing, facts: Facts, rng: random.Random):
        self.ph, self.f, self.rng = ph, facts, rng
        self.used: set[int] = set()  # templates already drawn for the caption being written
        self.definite = False  # objects already introduced by the caption's first sentence
        self._groups: dict[int, tuple[list, list]] = {}  # id(unit) -> (unit, [(group, ctx)]), for redraws
        self._strict = False  # core units may not be dropped to meet a count (the chosen caption's contract)
        self._closing: list[str] | None = None  # the unit that ends a story or theme (kept last)
        self._about_main: tuple[set, set] = (set(), set())

    # ================================================================ instructions
    def instruction(self, itype: str, lc: LengthConstraint | None) -> str:
        f, rng, ph = self.f, self.rng, self.ph
        ctx: dict[str, Any] = {"media": f.lex["media_instruction"][f.modality]}
        things = f.things
        named: list[dict] = []
        if itype == "instance":
            if not things:
                raise ValueError("grounding_lacks_objects: instance needs an object to exclude")
            bg = (f.scene.get("bg") or "").lower()
            cats = [o["cat"] for o in things]
            good = [o for o in things if cats.count(o["cat"]) == 1 and o["cat"].lower() not in bg] or things
            named = [rng.choice(good)]
        elif itype in STRICT_NAMING:
            if not things:
                raise ValueError(f"grounding_lacks_objects: {itype} needs an object to name")
            weights = [1, 3, 1] if itype == "position" else [3, 2, 1]
            n = rng.choices([1, 2, 3][: min(3, len(things))], weights=weights[: min(3, len(things))])[0]
            if lc is not None and lc.unit == "words":  # name no more than the length lets a caption cover
                from acd.checks.coverage import min_words

                while n > 1 and min_words(f.modality, itype, f.g, n) > lc.target_bounds()[1]:
                    n -= 1
            idx = sorted(rng.sample(range(len(things)), n))
            named = [things[i] for i in idx]
        elif itype == "action":
            if not things:
                raise ValueError("grounding_lacks_objects: action needs an object to name")
            movers = [o for o in things if o.get("moving")]
            named = [rng.choice(movers or things)]
        elif itype == "event":
            seen: list[dict] = []
            for e in f.events:
                for o in e["objs"]:
                    if o not in seen:
                        seen.append(o)
            named = seen[:3] if seen and rng.random() < 0.7 else []
        elif itype in ("camera", "background") and things and rng.random() < 0.5:
            named = [rng.choice(things)]
        if named:
            ctx["target"] = named[0]["label"]
            if len(named) >= 2:
                ctx["targets"] = join_and([o["label"] for o in named])
            if len(named) == 2:
                ctx["target2"] = named[1]["label"]
        if itype == "theme":
            tid = rng.choice(sorted(ph.styles["themes"]))
            ctx["theme_a"] = article(rng.choice(ph.styles["themes"][tid]["phrases"]))
        elif itype == "perspective":
            vids = sorted(ph.styles["viewpoints"])
            if len(f.objs) < 2:
                vids.remove("object")
            vid = rng.choice(vids)
            phrase = rng.choice(ph.styles["viewpoints"][vid]["phrases"])
            if vid == "object":
                phrase = phrase.format(target=rng.choice(f.objs)["label"])
            ctx["viewer"] = phrase
        tpls = [t for t in ph.instruction_tpls[(itype, f.modality)] if t.ok(ctx)]
        if itype in STRICT_NAMING:
            tpls = [t for t in tpls if _covers(t, len(named))] or tpls
        elif named:  # prefer phrasings that name the thing, as the release's content items do
            naming = [t for t in tpls if {"target", "targets"} & set(t.fields)]
            if naming and rng.random() < 0.7:
                tpls = naming
        text = cap(rng.choice(tpls).render(ctx, rng))
        ins = ph.instructions
        if (itype in ins["truth_suffix_types"] and f.modality in ins["truth_suffix_modalities"]
                and rng.random() < ins["truth_suffix_prob"]):
            text = f"{text} {ins['truth_suffix'].format(media=ctx['media'])}"
        length = lc.sentence() if lc is not None and lc.form != "none" else None
        if length:
            text = f"{length} {text}" if rng.random() < ins["length_first_prob"] else f"{text} {length}"
        return text

    # ================================================================ plan (instruction -> targets)
    def plan(self, itype: str, instruction: str | None) -> Plan:
        f, ph = self.f, self.ph
        text = (instruction or "").lower()
        found = []
        for o in f.things:
            m = re.search(r"\b" + re.escape(o["label"].lower()) + r"\b", text)
            if m:
                found.append((m.start(), o))
        found.sort(key=lambda x: x[0])
        ids = [o["id"] for _, o in found]
        p = Plan(itype=itype, target_ids=ids, instruction=instruction)
        if itype == "instance" and ids:
            p.excluded_id = ids[0]
        elif itype == "theme":
            p.theme = next((tid for tid, spec in ph.styles["themes"].items()
                            if any(x.lower() in text for x in spec["phrases"])), "mood")
        elif itype == "perspective":
            p.viewpoint = next((vid for vid, spec in ph.styles["viewpoints"].items() if vid != "object"
                                and any(x.lower() in text for x in spec["phrases"])), None)
            if p.viewpoint is None:
                if ids and len(f.objs) >= 2:
                    p.viewpoint, p.viewer_id = "object", ids[0]
                else:
                    p.viewpoint = "visitor"
        elif itype == "action" and not ids and f.things:
            movers = [o for o in f.things if o.get("moving")] or f.things
            p.target_ids = [movers[0]["id"]]
        return p

    # ================================================================ captions
    def caption(self, plan: Plan, lc: LengthConstraint | None, target: Target | None = None,
                itype: str | None = None, lite: bool = False, force_first: str | None = None) -> str:
        """Write a caption of `itype` (default: the plan's) fitted to `target` (default: from lc).

        lite: fewer facts and no attributes (the weak-model rejection); force_first: an object id whose
        mention must lead the caption (the ignore_instruction rejection of instance).
        """
        # The chosen caption holds to its type's contract (schemas/contracts.yaml): its core units are never
        # dropped to meet a count, and a draft the content checks fault is drawn again. Rejected captions
        # (lite, force_first, another type or target) are written to miss on purpose and skip this.
        contract = not lite and not force_first and target is None and (itype or plan.itype) == plan.itype
        text, fitted = "", None
        for attempt in range(6):  # fresh draws of phrasings and facts until the count (and contract) are met
            # the last draws may drop a core fact to meet the count: the check stage then faults the caption
            # and the pair is asked again (another seed) or dropped with the reason, never shipped short
            self._strict = contract and attempt < 4
            text, target_ = self._caption_once(plan, lc, target, itype, lite, force_first)
            if target_ is None or target_.unit != "words" or target_.lo <= count_words(text) <= target_.hi:
                if not contract or not self.problems(text, plan):
                    return text
                fitted = fitted or text
        return fitted or text

    def problems(self, text: str, plan: Plan) -> list[str]:
        """What the check stage would fault in this chosen caption (acd.checks.rules.chosen_problems)."""
        from acd.checks.rules import chosen_problems

        return chosen_problems(plan.instruction, text, self.f.modality, self.f.g, plan.itype)

    def _caption_once(self, plan: Plan, lc: LengthConstraint | None, target: Target | None,
                      itype: str | None, lite: bool, force_first: str | None) -> tuple[str, Target | None]:
        itype = itype or plan.itype
        if itype == "poem":
            if target is None and lc is not None and lc.unit == "words":
                lo, hi = lc.target_bounds()
                check = Target("words", lo, hi, lo)
            else:
                check = target
            return self._poem(plan, lc, target, lite), check
        units, n_core, natural = self._units(itype, plan)
        if force_first:
            o = self.f.by_id.get(force_first)
            if o:
                units.insert(0, self.u("obj_full", o) or self.u("obj_short", o))
                n_core += 1
        if lite:
            units, natural = units[: max(2, n_core)] + units[-4:], min(natural, 2)
        tiny = f"tiny_{itype}"
        self._about_main = (set(), set())
        # a one-thing first sentence, where the type has one (prompts/grounded/captions.yaml `tiny_<type>`)
        if units and tiny in self.ph.sentences and not force_first:
            main = self._main(itype, plan)
            short = self.u(tiny, main, k=3)
            if main and itype in _INTRO_TYPES:  # a first sentence about one thing: its own later sentences go
                self._about_main = (set(short), {i for i, un in enumerate(units) if i and any(
                    c.get("id") == main.get("id") for _, c in self._sources(un))})
            units[0] = self.join_units(units[0], short)
            if itype in ("brief", "detail") and self.f.modality != "audio" and self.f.objs:
                units[0] = self.join_units(units[0], self.u("scene_tiny", k=3))  # short, still names everything
        if any(not u for u in units):  # keep the about-main unit indices in step with the list
            keep = [i for i, u in enumerate(units) if u]
            self._about_main = (self._about_main[0], {keep.index(i) for i in self._about_main[1] if i in keep})
            units = [units[i] for i in keep]
        if not lite:
            units += self._extra_units(units, itype)
        units += self._fillers(itype)
        units = self._closing_last(units, n_core)
        if target is None:
            target = _target(lc, natural, units)
        text = self._fit(units, n_core, target)
        tries = 0
        while text is None and tries < 6:  # no exact fit with these draws: draw other phrasings of the same facts
            tries += 1
            units = [self.u_alt(u) for u in units]
            text = self._fit(units, n_core, target)
        if text is None:
            FALLBACKS["prose"] += 1
            text = self._fit(units, n_core, target, force=True)
        return text, target

    def _closing_last(self, units: list[list[str]], n_core: int) -> list[list[str]]:
        """Move a story's or theme's closing line behind every fact (nothing is said after 'The tale ends')."""
        closing, self._closing = self._closing, None
        idx = next((i for i, un in enumerate(units) if un is closing), None) if closing is not None else None
        if idx is None or idx < n_core or idx == len(units) - 1:
            return units
        first, about = self._about_main
        shift = {i: (i - 1 if i > idx else i) for i in about if i != idx}
        self._about_main = (first, set(shift.values()) | ({len(units) - 1} if idx in about else set()))
        return units[:idx] + units[idx + 1:] + [closing]

    def _main(self, itype: str, plan: Plan) -> dict | None:
        """The thing a tiny first sentence is about: the named target, else the first object/sound."""
        f = self.f
        things = f.things
        if itype == "instance":
            ex = f.by_id.get(plan.excluded_id)
            things = [o for o in things if not ex or o["cat"] != ex["cat"]]
            return things[0] if things else None
        if itype == "event" and f.events:
            return f.events[0]["objs"][0]
        for i in plan.target_ids:
            if i in f.by_id:
                return f.by_id[i]
        return things[0] if things else None

    def u(self, group: str, *parts: dict | None, k: int = 3, **extra: Any) -> list[str]:
        """Up to k phrasings of one fact; for an object, also the same phrasings without its size word
        (a fact said with one word less, so word counts can be met exactly without padding)."""
        mover = next((p for p in parts if p and p.get("moving")), None)
        if mover is not None:
            if group == "obj_intro_video" and mover.get("t_in"):
                group = "obj_intro_late"  # it enters after the first frame: never "the video opens with it"
            elif group == "camera_subject" and mover.get("leaves"):
                group = "camera_subject_leaves"  # "never leaves the frame" is false of it
            elif group not in _MOVER_GROUPS and "where" not in extra:
                extra = {**extra, **self._placed_at_start(mover)}
        ctx = self._vary(self.f.ctx(*parts, **extra), extra)
        if self.definite and ctx.get("ref_opts") and "indef" not in extra:
            # the caption's first sentence already introduced this object: name it as "the ..." now
            group = group + _DEF
            ctx["indef"] = ctx["ref"]
            ctx["indef_lean"] = min(ctx["ref_opts"], key=len)
            ctx["size"] = None
        out = pick_from(self._tpls(group), ctx, self.rng, k, self.used)
        if ctx.get("indef_lean") and ctx.get("indef") != ctx.get("indef_lean"):
            lean = dict(ctx, indef=ctx["indef_lean"], size=None)
            out += [t for t in pick_from(self._tpls(group), lean, self.rng, k) if t not in out]
        self._groups[id(out)] = (out, [(group, ctx)])
        return out

    def _placed_at_start(self, o: dict) -> dict[str, Any]:
        """A moving object's place said with its moment ("in the top left corner at first"): a sentence
        shape written for still objects may then still give its place, and the place is true."""
        opts = o.get("where_opts") or ([o["where"]] if o.get("where") else [])
        if not opts:
            return {}
        if o.get("t_in"):  # it enters late: its first place holds from then, not from the start
            moments = [f"at {o['t_in']} seconds", "when it first appears"]
        else:
            moments = self.f.lex.get("start_moment", ["at first", "at the start"])
        out = {"where_opts": [f"{w} {m}" for w in opts for m in moments]}
        if o.get("at_pos"):
            out["at_pos"] = f"{o['at_pos']} {moments[0]}"
        return out

    def _tpls(self, group: str) -> tuple:
        """A group's templates; 'group#def' keeps those that read well with a definite noun phrase
        ("There is the ball" does not)."""
        if not group.endswith(_DEF):
            return self.ph.sentences[group]
        base = self.ph.sentences[group[: -len(_DEF)]]
        hit = _DEF_CACHE.get(id(base))
        if hit is None or hit[0] is not base:  # keyed by the base tuple itself (an id alone can be reused)
            hit = _DEF_CACHE[id(base)] = (base, tuple(t for t in base if not _INDEF_ONLY.search(t.text)))
        return hit[1]

    _VARIED = ("where", "end_where", "when", "abg", "indef", "ref", "s_indef", "s_ref", "objects_list", "bg_indef",
               "lighting", "decor", "mood", "adjs", "parts", "cam",
               "vp_indef", "edge_note", "loud", "media", "action")

    def _vary(self, ctx: dict[str, Any], fixed: dict[str, Any] | None = None) -> dict[str, Any]:
        """The same facts in other words: one drawn wording per value that has `<key>_opts` (data)."""
        for key in self._VARIED:
            opts = ctx.get(f"{key}_opts")
            if opts and key not in (fixed or ()):
                ctx[key] = self.rng.choice(opts)
        if ctx.get("mood_opts"):
            ctx["mood_indef"] = article(ctx["mood"])
        if ctx.get("decor_parts") and "decor" not in (fixed or ()):
            ctx["decor"] = join_and([self.rng.choice(opts) for opts in ctx["decor_parts"]])
            ctx["decor1"] = self.rng.choice(ctx["decor_parts"][0])
        if ctx.get("indef_adj") and "indef" not in (fixed or ()) and self.rng.random() < 0.35:
            ctx["indef"], adj = self.rng.choice(ctx["indef_adj"])
            rest = [a for a in (ctx.get("_adjs") or []) if a != adj]
            ctx["adjs"] = join_and(rest) or None  # the adjective is said once
        rel = ctx.get("rel")
        if rel:
            ctx["rel"] = self.rng.choice([rel] + list(self.f.lex.get("relation_alt", {}).get(rel, [])))
        return ctx

    def join_units(self, *units: list[str]) -> list[str]:
        """One unit made of several units' phrasings (alternatives for the same slot), redrawable."""
        out = [t for u in units for t in u]
        self._groups[id(out)] = (out, [src for u in units for src in self._sources(u)])
        return out

    def _sources(self, unit: list[str]) -> list[tuple[str, dict]]:
        g = self._groups.get(id(unit))
        return g[1] if g and g[0] is unit else []

    def u_alt(self, unit: list[str]) -> list[str]:
        """`unit` plus more phrasings of the same fact (for a further fitting attempt)."""
        srcs = self._sources(unit)
        out = list(unit)
        for group, ctx in srcs:
            out += [t for t in pick_from(self._tpls(group), ctx, self.rng, 8) if t not in out]
        self._groups[id(out)] = (out, srcs)
        return out

    def _extra_units(self, units: list[list[str]], itype: str) -> list[list[str]]:
        """True scene facts a caption does not yet state, last in priority: what a long word target
        ("exactly 60 words") adds before anything else, so fact-poor scenes still reach it truthfully."""
        have = {g for u in units for g, _ in self._sources(u)}
        if have & {"scene_intro", "scene_intro#def", "scene_empty"}:
            have.add("background")  # the intro names the backdrop
        if have & {"sound_full", "sound_full#def"}:
            have |= {"sound_quality", "sound_pattern"}  # said in the sound's own sentence
        if have & {"sound_span_when", "sound_length"}:
            have.add("sound_span")
        if self.f.modality == "audio":
            # a story carries no "This is a short recording of about 4 seconds" (readers: tacked on)
            groups = ["audio_mood"] + ([] if itype == "narrative" else ["audio_duration", "audio_background"])
            extra = [self.u(g) for g in groups if g not in have]
            for s in self.f.sounds:
                extra += [self.u(g, s) for g in ("sound_quality", "sound_pattern", "sound_span") if g not in have]
            return [x for x in extra if x]
        groups = ["background", "background_decor", "background_colour", "lighting", "viewpoint", "mood"]
        extra = [self.u(g) for g in groups if g not in have]
        # no "There are three objects altogether." or "All told, the clip lasts 2.5 seconds." to make up a count:
        # readers take them for padding; the length is a fact only where time is what is asked about
        if self.f.modality == "video" and "duration" not in have and itype in ("event", "action", "camera"):
            extra.append(self.u("duration"))
        return [x for x in extra if x]

    def _fillers(self, itype: str = "") -> list[list[str]]:
        if itype in ("background", "instance"):
            return []  # "no other objects" talks about objects, which these captions must not
        if len(self.f.things) > 1:
            return []  # "Nothing else is in the footage" is true only of a one-thing scene
        g = "filler_audio" if self.f.modality == "audio" else "filler_visual"
        return [[s] for s in self.u(g, k=2)]

    def _fit(self, units: list[list[str]], n_core: int, t: Target, force: bool = False) -> str | None:
        """Pick facts (units) and a phrasing of each so the caption meets the target exactly.

        Only whole true sentences are added or dropped; None when these phrasings cannot make the count
        (the caller draws others). force: the last resort, cut at a word boundary (counted as a fallback).
        """
        n_core = max(1, min(n_core, len(units)))
        if t.unit != "words":
            k = t.pref
            picked = [u[0] for u in units[:k]]
            if n_core > k:  # more asked-for facts than sentences allowed: merge them
                picked = picked[: k - 1] + [merge_sentences([u[0] for u in units[k - 1 : n_core]])]
            while len(picked) < k:  # only for absurdly small scenes: the exhaustive-grounding facts
                picked.append(units[-1 - (len(picked) % min(2, len(units)))][0])
            return " ".join(picked)
        wcs = [[count_words(b) for b in u] for u in units]
        main_first, main_units = getattr(self, "_about_main", (set(), set()))
        if main_first and not force:
            # either the first sentence lists the scene, or it is about the main thing and that thing's
            # later sentences are left out (never the same thing introduced twice)
            no = t.hi + 1  # a weight no total can use
            wa = [[w if b not in main_first else no for b, w in zip(units[0], wcs[0])]] + wcs[1:]
            picks = choose_words(wa, n_core, t.lo, t.hi, t.pref, strict=self._strict)
            if picks is None:
                wb = [[w if b in main_first else no for b, w in zip(units[0], wcs[0])]]
                wb += [[no] * len(w) if i + 1 in main_units else w for i, w in enumerate(wcs[1:])]
                picks = choose_words(wb, 1, t.lo, t.hi, t.pref)
            if picks is not None:
                return " ".join(units[i][j] for i, j in picks)
            return None
        picks = choose_words(wcs, n_core, t.lo, t.hi, t.pref, strict=self._strict)
        if picks is None:
            if not force:
                return None
            # No phrasing of these facts meets the count: write the nearest grammatical caption, never a
            # cut or padded one. The check stage then fails it on length and it is regenerated (another
            # attempt draws other targets and phrasings) or dropped with that reason.
            hi = int(min(t.hi, t.lo + 200))
            picks = choose_words(wcs, n_core, 1, hi + 40, t.pref)
            if picks is None:
                return min(units[0], key=count_words)
        return " ".join(units[i][j] for i, j in picks)

    # ---------------------------------------------------------------- units per type
    def _units(self, itype: str, plan: Plan) -> tuple[list[list[str]], int, int]:
        if self.f.modality == "audio":
            return self._audio_units(itype, plan)
        f, rng, u = self.f, self.rng, self.u
        objs = f.objs
        targets = [f.by_id[i] for i in plan.target_ids if i in f.by_id]
        video = f.modality == "video"
        scene = self._scene_units(objs)

        if itype == "brief":
            main = objs[0] if objs else None
            if len(objs) > 2:  # a brief caption names many things without their sizes
                lean = objects_list([dict(o, indef=o["indef_lean"], size=None) for o in objs], f.lex["numbers"])
                scene = [u("scene_intro", objects_list=lean)]
            first = self.join_units(scene[0], u("scene_tiny", k=1) if objs else [])
            exits = self._exit_units(objs)  # the contract: an object that leaves the frame is said to leave
            self.definite = bool(objs)
            units = [first] + exits + self._object_units(objs, short=True)
            self.definite = False
            return units + self._setting_units(), 1 + len(exits), 1  # exits merge into the one brief sentence
        if itype == "detail":
            exits = self._exit_units(objs)  # the contract: every object and every exit
            self.definite = bool(objs)
            units = [scene[0]] + exits + self._object_units(objs)
            self.definite = False
            if len(objs) >= 2:
                units.append(self._relation(objs[0], objs[1]))
            units += self._setting_units(full=True)
            if video:
                units += [u("camera")] + self._event_units([e for e in f.events if e["type"] != "leave"]) + [u("duration")]
            units += self._box_units(objs)
            return units, 1 + len(exits), rng.randint(10, 13)
        if itype == "narrative":
            units = [u("narr_open")]
            if video:  # who is there first, then what they do
                units += self._event_units(f.events[:1])
            # the contract: a story names every thing in it, each in a sentence of its own
            units += [u("narr_motion", o) if o.get("moving") else u("narr_obj", o) for o in objs]
            n_core = len(units)
            if video:
                units += self._event_units(f.events[1:])
            self._closing = u("narr_close")  # a story's closing line comes last, after any fact it carries
            units += [u("background_decor"), u("lighting"), u("background"), self._closing]
            # as long as its story: the open, each thing and what happens, and a close (no list of measurements)
            natural = max(n_core + 1, min(rng.randint(5, 7), 3 + len(objs) + (len(f.events) if video else 0)))
            return units, n_core, natural
        if itype == "theme":
            spec = self.ph.style_tpls["themes"][plan.theme or "mood"]
            ctx = self._vary(f.ctx())
            units = [pick_from(spec["open"], ctx, rng, 2, self.used), u("theme_light")]
            self.definite = bool(objs)
            units += [u("obj_action", o) if o.get("moving") else u("theme_obj", o) for o in objs[:3]]  # no "rests" for a mover
            self.definite = False
            self._closing = pick_from(spec["close"], ctx, rng, 2, self.used)
            units += [u("background_decor"), u("mood"), u("background"), self._closing]
            return units, 1, rng.randint(6, 7)
        if itype == "perspective":
            spec = self.ph.style_tpls["viewpoints"][plan.viewpoint or "visitor"]
            viewer = f.by_id.get(plan.viewer_id) if plan.viewer_id else None
            vctx = {}
            if viewer:
                vwhere = self._placed_at_start(viewer).get("where_opts", [viewer["where"]])[0] if viewer.get("moving") else viewer["where"]
                vctx = {"vref": viewer["ref"], "vwhere": vwhere}
            units = [pick_from(spec["open"], self._vary(f.ctx(vctx)), rng, 2, self.used)]
            for o in objs:
                if o is viewer:
                    continue
                rel = relation(o, viewer) if viewer else None
                place = self._placed_at_start(o) if o.get("moving") else {}
                units.append(pick_from(spec["object"], self._vary(f.ctx(o, vctx, place, rel=rel)), rng, 4, self.used))
            self._closing = pick_from(spec["close"], self._vary(f.ctx(vctx)), rng, 2, self.used)
            units += [u("background_decor"), u("lighting"), self._closing]
            n_core = len(units) - 3  # the open and every thing in view (the contract); not the close or setting
            natural = max(n_core, rng.randint(3, 4) if video else rng.randint(4, 5))  # the release's video views are shorter
            return units, n_core, natural
        if itype == "instance":
            ex = f.by_id.get(plan.excluded_id)
            keep = [o for o in objs if not ex or o["cat"] != ex["cat"]]
            ol = objects_list(keep, f.lex["numbers"])
            first = u("scene_intro", objects_list=ol) if keep else u("scene_empty")
            exits = self._exit_units(keep)
            self.definite = bool(keep)
            units = [first or u("background")] + exits + self._object_units(keep)
            self.definite = False
            units += self._setting_units(full=True)
            if video:
                units += [u("camera")] + self._event_units([e for e in f.events if (not ex or ex not in e["objs"])
                                                            and e["type"] != "leave"])
            if ex:  # belt and braces: no variant may carry the excluded category word
                rx = re.compile(r"\b" + re.escape(ex["cat"].lower()) + r"s?\b")
                units = [[v for v in un if not rx.search(v.lower())] for un in units]
            return units, 1 + len(exits), max(1 + len(exits), rng.randint(5, 7))
        if itype == "appearance":
            targets = targets or objs[:1]
            # the contract's core: colour, size and a feature of each named object, one sentence each; then
            # only facts not said yet (width, place, light), never the colour or size again
            units = [u("obj_looks", o, k=8) or u("obj_looks_nosize", o, k=8) or u("obj_looks_plain", o, k=8)
                     for o in targets]  # many lengths of the one sentence, so exact counts can be met
            units += [u("obj_width", o) for o in targets]
            units += [u("obj_position", o) for o in targets] + [u("lighting"), u("background")]
            return units, len(targets), len(targets) + 1
        if itype == "position":
            targets = targets or objs[:1]
            units = [u("obj_intro_video" if o.get("moving") else "obj_position", o) for o in targets]
            units += self._exit_units(targets)  # the contract: a named object that leaves is said to leave
            n_core = len(units)
            others = [o for o in objs if o not in targets]
            pairs = [(a, b) for i, a in enumerate(targets) for b in targets[i + 1:]]
            pairs += [(a, b) for a in targets for b in others][:2]
            units += [self._relation(a, b) for a, b in pairs]
            if video:
                units += [u("obj_end", o) for o in targets]
            if len(objs) >= 3:
                units += [u("lineup", lineup=self._lineup(objs))]
            units += [u("background")]
            return units, n_core, n_core + (1 if video else 2)
        if itype == "action":
            o = targets[0] if targets else (objs[0] if objs else None)
            if o is None:
                return [u("scene_empty")], 1, 1
            units = [u("obj_action", o) if o.get("moving") else u("obj_still", o)]
            if o.get("moving"):
                units += [u("obj_intro_video", o), u("obj_end", o)]
            # its events, less the trivial "there from the first frame"
            units += self._event_units([e for e in f.events if o in e["objs"] and not (e["type"] == "appear" and e["t"] <= 0.05)])
            units += [u("camera_subject", o), u("duration"), u("background")]
            return units, 1, rng.randint(3, 4)
        if itype == "event":
            # the contract: every event and every moving object's motion, in the order they happen
            # a mover's motion is told before it leaves (a reader rejects "exits ... then falls down")
            core, told = [], set()
            for e in f.events:
                if e["type"] == "leave":
                    for o in e["objs"]:
                        if o.get("moving") and o["id"] not in told:
                            core.append(u("obj_action", o))
                            told.add(o["id"])
                core += self._event_units([e])
            core += [u("obj_action", o) for o in objs if o.get("moving") and o["id"] not in told]
            core = core or [u("no_events")]
            units = core + [u("obj_end", o) for o in objs if o.get("end_where")] + [u("duration"), u("background")]
            units += [u("camera"), u("background_decor"), u("lighting")]
            return units, len(core), min(len(core) + 1, 8)
        if itype == "camera":
            o = targets[0] if targets else None
            still = (f.g.get("camera") or {}).get("motion") in (None, "static")
            # the contract: the camera's motion, and the thing the instruction films ("while filming the box")
            units = [u("camera")]
            if o:
                units.append(u("camera_subject", o))  # said as leaving when it does (Writer.u)
            n_core = len(units)
            units += [u("camera_still_decor" if still else "camera_decor"), u("camera_view")]
            units += [u("duration"), u("background"), u("background_decor"), u("lighting")]
            return units, n_core, max(n_core, rng.randint(3, 5))
        if itype == "background":
            units = [u("background"), u("background_decor"), u("background_colour"), u("lighting"), u("mood"),
                     u("viewpoint"), u("duration")]
            if video:  # what the camera does to the backdrop is a fact about the background too
                still = (f.g.get("camera") or {}).get("motion") in (None, "static")
                units.append(u("camera_still_decor" if still else "camera_decor"))
            return units, 1, rng.randint(4, 6)
        raise ValueError(f"no caption recipe for {f.modality}/{itype}")

    def _exit_units(self, objs: list[dict]) -> list[list[str]]:
        """One unit per leave event of these objects (video): blind readers count an unstated exit as missing."""
        if self.f.modality != "video":
            return []
        return self._event_units([e for e in self.f.events if e["type"] == "leave" and any(o in e["objs"] for o in objs)])

    def _relation(self, a: dict, b: dict) -> list[str]:
        """Where a is relative to b; for a moving object that holds only at the start, and is said so."""
        group = "relation_start" if a.get("moving") or b.get("moving") else "relation"
        return self.u(group, a_ref=a["ref"], b_ref=b["ref"], rel=relation(a, b))

    def _lineup(self, objs: list[dict]) -> str | None:
        """'the house, the ball, and the star' in left-to-right order, when the boxes are clearly apart."""
        xs = sorted((o for o in objs if o.get("_cx") is not None), key=lambda o: o["_cx"])
        if len(xs) < 3 or len(xs) != len(objs) or any(b["_cx"] - a["_cx"] < 0.1 for a, b in zip(xs, xs[1:])):
            return None
        return join_and([o["ref"] for o in xs])

    def _box_units(self, objs: list[dict]) -> list[list[str]]:
        """Facts read off the objects' boxes: which is largest/smallest, left-to-right order, widths."""
        u = self.u
        out: list[list[str]] = []
        sized = sorted((o for o in objs if o.get("_area")), key=lambda o: -o["_area"])
        if len(sized) >= 2 and len(sized) == len(objs):
            big, second, small, prev = sized[0], sized[1], sized[-1], sized[-2]
            if big["_area"] >= 1.5 * second["_area"]:
                out.append(u("size_rank", big))
            if len(sized) >= 3 and small["_area"] * 1.5 <= prev["_area"]:
                out.append(u("size_small", small))
            elif len(sized) == 2 and not out and big["_area"] >= 1.3 * small["_area"]:
                out.append(u("compare_size", a_ref=big["ref"], b_ref=small["ref"]))
        line = self._lineup(objs)
        if line:
            out.append(u("lineup", lineup=line))
        out += [u("obj_width", o) for o in objs[:3]]
        return [x for x in out if x]

    def _scene_units(self, objs: list[dict]) -> list[list[str]]:
        return [self.u("scene_intro") if objs else self.u("scene_empty")]

    def _object_units(self, objs: list[dict], short: bool = False) -> list[list[str]]:
        out = []
        for o in objs:
            if o.get("moving"):
                out.append(self.u("obj_action", o) if short else self.u("obj_intro_video", o))
                if not short:
                    out.append(self.u("obj_action", o))
            else:
                out.append(self.u("obj_short" if short else "obj_full", o))
        return out

    def _setting_units(self, full: bool = False) -> list[list[str]]:
        """The setting after a scene intro (brief, detail, instance): the intro named the backdrop already,
        so not "The place is a shady forest" again."""
        u = self.u
        units = [u("background_decor"), u("lighting")]
        if full:
            units += [u("viewpoint"), u("mood")]
        return units

    def _when(self, t: float) -> str:
        lex = self.f.lex
        if t <= 0.05:
            return self.rng.choice(lex["when_start"])
        return self.rng.choice(lex["when_time"]).format(t=fmt_t(t))

    def _event_units(self, events: list[dict]) -> list[list[str]]:
        out = []
        for e in events:
            objs, one = e["objs"], len(e["objs"]) == 1
            refs = join_and([o.get("ref") or o.get("s_ref") for o in objs])
            ctx = dict(when=self._when(e["t"]), objs=refs, etype=e["type"] + ("s" if one else ""),
                       appear_v="appears" if one else "appear", come_v="comes" if one else "come",
                       leave_v="leaves" if one else "leave", exit_v="exits" if one else "exit",
                       a_ref=objs[0].get("ref"), b_ref=objs[1].get("ref") if len(objs) > 1 else None)
            group = {"appear": "event_appear", "collide": "event_collide", "leave": "event_leave"}.get(e["type"], "event_other")
            unit = self.u(group, **ctx) or self.u("event_other", **ctx)
            if group == "event_appear" and e["t"] <= 0.05:  # short forms that are only true at the start
                lean = dict(ctx, objs=join_and([o.get("label") or o.get("ref") for o in objs]))
                unit = self.join_units(unit, self.u("event_appear_start", **ctx), self.u("event_appear_start", **lean))
            if e["t"] > 0.05:  # a variant with the shortest time phrase, for tight word limits
                ctx["when"] = self.f.lex["when_time"][-1].format(t=fmt_t(e["t"]))
                unit += self.u(group, k=1, **ctx)
            out.append(unit)
        return out

    # ---------------------------------------------------------------- audio
    def _audio_units(self, itype: str, plan: Plan) -> tuple[list[list[str]], int, int]:
        f, rng, u = self.f, self.rng, self.u
        snds = f.sounds
        intro = self.join_units(u("audio_intro"), u("audio_tiny", k=2)) if snds else u("audio_empty")
        setting = [u("audio_background"), u("audio_mood"), u("audio_duration")]
        if itype == "brief":
            return [intro] + [u("sound_short", s) for s in snds] + setting, 1, 1
        if itype == "detail":
            units = [intro]
            for s in snds:
                units.append(u("sound_full", s))
            for s in snds:  # its loudness, pitch and pattern are in its sound_full sentence: not again
                units += [self._between(s),  # not "As sounds go, the bell is a tonal one" (readers: filler)
                          u("sound_length", s) if rng.random() < 0.5 else u("sound_span", s)]
            units.append(u("sound_order"))
            return [x for x in units if x] + setting, 1, max(4, min(rng.randint(8, 10), 3 + 3 * len(snds)))
        if itype == "event":
            # the contract: the start and the stop of every sound, each sound once, in the order they begin
            ev = [u("sound_span_when", s) for s in snds]
            if not ev:
                ev = [u("audio_empty")]
            # not the pauses between sounds: each sound's start is already said ("after a gap, the drum begins")
            more = [u("sound_order")] + [u("sound_quality", s) for s in snds]
            return ev + [x for x in more if x] + setting, len(ev), min(len(ev) + 2, 9)
        if itype == "narrative":
            # the contract: a story names every sound in it, in the order they come
            units = [u("narr_audio_open")] + [u("narr_sound", s) for s in snds]
            n_core = len(units)
            self._closing = u("narr_audio_close")  # open/close say the background
            units += [u("audio_mood"), self._closing]  # not "This is a short recording of 4 seconds" in a story
            return units, n_core, max(n_core + 1, min(rng.randint(5, 7), 3 + len(snds)))
        raise ValueError(f"no caption recipe for audio/{itype}")

    def _between(self, s: dict) -> list[str]:
        """What lies between a sound and the one before it: a pause, or an overlap."""
        if s.get("gap"):
            return self.u("sound_gap", s)
        if s.get("overlap") and s.get("prev_ref"):
            return self.u("sound_overlap", s)
        return []

    # ---------------------------------------------------------------- poems
    def _couplets(self, group: str, *parts: dict | None, k: int = 2) -> list[tuple[str, str]]:
        ctx = self._vary(self.f.ctx(*parts))
        ok = [c for c in self.ph.poem[group] if c[0].ok(ctx) and c[1].ok(ctx)]
        if not ok:
            return []
        fresh = [c for c in ok if id(c) not in self.used] or ok
        pick = self.rng.sample(fresh, min(k, len(fresh)))
        self.used.add(id(pick[0]))
        return [(cap(a.render(ctx, self.rng)), cap(b.render(ctx, self.rng))) for a, b in pick]

    def _poem(self, plan: Plan, lc: LengthConstraint | None, target: Target | None, lite: bool) -> str:
        f, rng, c = self.f, self.rng, self._couplets
        if f.modality == "audio":
            units = [c("sound", s) for s in f.sounds[:3]] + [c("audio_background"), c("mood")]
            n_full = len([x for x in units if x])  # natural poems use full couplets
            units += [c("sound", s) for s in f.sounds[:3]] + [c("audio_background"), c("audio_short")]
        else:
            units = []
            for o in f.objs[:3]:
                units.append(c("motion", o) if o.get("moving") else c("object", o))
            if f.modality == "video" and f.scene.get("cam"):
                units.append(c("camera"))
            units += [c("background"), c("mood")]
            n_full = len([x for x in units if x])
            # second-round couplets give long forms (exactly 60 words) room; short ones fit tight limits
            units += [c("motion" if o.get("moving") else "object", o) for o in f.objs[:3]] + [c("background")]
            units += [c("object_short", o) for o in f.objs[:2] if not o.get("moving")] + [c("short")]
        units = [x for x in units if x]
        if units:  # short couplets as alternatives for the first couplet, for "exactly 10 words"
            if f.modality == "audio":
                units[0] = units[0] + c("audio_short", f.sounds[0] if f.sounds else None, k=3)
            else:
                still = f.objs and not f.objs[0].get("moving")
                units[0] = units[0] + (c("object_short", f.objs[0]) if still else []) + c("short_named" if f.objs else "short", k=3)
        if lite:
            units = units[:2]
        if not units:
            units = [[("Quiet", "still")]]
        natural = max(1, min(2 if f.modality == "audio" else rng.randint(2, 4), n_full))  # release: audio poems are short
        if target is None:
            if lc is None or lc.form == "none":
                target = Target(None, natural, natural, natural)
            elif lc.unit == "words":
                nat_w = sum(count_words(a) + count_words(b) for a, b in (x[0] for x in units[:natural]))
                lo, hi = lc.target_bounds()
                target = Target("words", lo, hi, min(max(nat_w, lo), hi if lc.form != "word_max" else hi))
            else:
                lo, hi = lc.target_bounds()
                target = Target("sentences", lo, hi, min(max(natural, lo), hi))
        if target.unit == "words":
            variants = []
            for i, vs in enumerate(units):
                vs = list(vs)
                for a, b in (vs[:1] if i > 0 else list(vs)):  # linking words on a couplet's first line
                    if a.split(" ", 1)[0].lower().strip(",") in _NO_LINK:
                        continue  # "And so listen, ..." does not read
                    for n, conns in self.ph.poem_connectives.items():
                        vs.append((f"{rng.choice(conns)} {lower_first(a)}", b))
                variants.append(vs)
            wcs = [[count_words(a) + count_words(b) for a, b in vs] for vs in variants]
            picks = choose_words(wcs, 1, target.lo, target.hi, target.pref)
            if picks is None:  # the nearest whole-couplet poem; the length check sends it back for another try
                FALLBACKS["poem"] += 1
                picks = choose_words(wcs, 1, 1, int(min(target.hi, target.lo + 200)) + 40, target.pref)
                if picks is None:
                    return _punctuate(list(variants[0][0]), 1)
            lines = [ln for i, j in picks for ln in variants[i][j]]
            return _punctuate(lines, len(lines) // 2)
        k = target.pref  # sentences wanted (natural: one per couplet)
        if target.unit == "sentences":
            # Under a sentence constraint a poem is one sentence per line, so counting lines and counting
            # full stops agree: each line is a whole couplet, its two halves joined by a comma.
            chosen = [vs[0] for vs in units[:k]]
            while len(chosen) < k:  # tiny grounding: other variants of the couplets
                chosen.append(units[len(chosen) % len(units)][-1])
            return "\n".join(f"{a.rstrip(' ,;.')}, {lower_first(b).rstrip(' ,;.')}." for a, b in chosen)
        chosen = [vs[0] for vs in units[:natural]]
        lines = [ln for cpl in chosen for ln in cpl]
        return _punctuate(lines, len(chosen))


def _punctuate(lines: list[str], n_sentences: int) -> str:
    """End exactly n_sentences lines with a full stop (always the last); others get ',' or ';'."""
    n = len(lines)
    n_sentences = max(1, min(n_sentences, n))
    order = [n - 1] + [i for i in range(n - 3, -1, -2)] + [i for i in range(0, n, 2)]
    ends: set[int] = set()
    for i in order:
        if len(ends) == n_sentences:
            break
        if 0 <= i < n:
            ends.add(i)
    out = []
    for i, ln in enumerate(lines):
        ln = ln.rstrip(" ,;.!?")
        out.append(ln + ("." if i in ends else ("," if i % 2 == 0 else ";")))
    return "\n".join(out)


def _covers(t: Tpl, n: int) -> bool:
    """A strict-naming template fits n named objects only if it names all of them."""
    fs = set(t.fields)
    if n == 1:
        return "targets" not in fs and "target2" not in fs
    if n == 2:
        return "targets" in fs or "target2" in fs
    return "targets" in fs


def _target(lc: LengthConstraint | None, natural: int, units: list[list[str]]) -> Target:
    from acd.grounded.fit import target_for

    nat_words = sum(count_words(u[0]) for u in units[:natural])
    return target_for(lc, natural, nat_words)
