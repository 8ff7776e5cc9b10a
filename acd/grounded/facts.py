"""Word-ready facts from a grounding dict (acd/grounding.py): noun phrases, position phrases, relations.

Everything a caption may claim is derived here from the grounding alone, so captions are true by
construction. A Facts object is immutable in practice and cached per media_key by the backend; the
rejection strategies corrupt a *copy of the grounding* and build new Facts from it.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from acd.grounding import POSITIONS
from acd.lexicon import inflect_engine, plural, when_bucket

_STILL_WORDS = ("stays", "still", "static", "remains", "does not move", "stationary")


@lru_cache(maxsize=4096)
def article(np: str) -> str:
    """'a'/'an' + np, decided by inflect (an hour, a one-eyed cat, an orange ball)."""
    if not np:
        return np
    return inflect_engine().a(np)


def join_and(items: list[str]) -> str:
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


def split_attributes(attrs: list[str]) -> tuple[list[str], list[str]]:
    """(adjectives, parts): 'round' is an adjective; 'with a long tail' is a part ('a long tail')."""
    adjs, parts = [], []
    for a in attrs:
        if a.startswith("with "):
            parts.append(a[5:])
        else:
            adjs.append(a)
    return adjs, parts


def objects_list(objs: list[dict], numbers: list[str]) -> str | None:
    """'a small red ball, two small green stars, and a large cube' (identical objects grouped)."""
    groups: dict[str, list[dict]] = {}
    for o in objs:
        groups.setdefault(o["indef"], []).append(o)
    parts = []
    for indef, same in list(groups.items())[:5]:
        if len(same) == 1:
            parts.append(indef)
        else:
            o = same[0]
            words = " ".join(x for x in (o.get("size"), o.get("colour"), plural(o["cat"])) if x)
            parts.append(f"{number_word(len(same))} {words}")
    return join_and(parts) or None


def _orders(objs: list[dict], numbers: list[str]) -> list[str] | None:
    """The same object list in other orders (same claim, other word sequence)."""
    if len(objs) < 2:
        return None
    out = [objects_list(objs, numbers), objects_list(objs[::-1], numbers),
           objects_list(objs[1:] + objs[:1], numbers)]
    if len(objs) > 2:  # "..., as well as a green star"
        full = objects_list(objs, numbers)
        head, _, last = full.rpartition(", and ")
        if head:
            out.append(f"{head}, as well as {last}")
    lean = [dict(o, indef=o["indef_lean"], size=None) for o in objs]  # sizes are said in later sentences
    out += [objects_list(lean, numbers), objects_list(lean[::-1], numbers), objects_list(lean[1:] + lean[:1], numbers)]
    return list(dict.fromkeys(x for x in out if x))


def _cats_list(objs: list[dict]) -> list[str]:
    counts: dict[str, int] = {}
    for o in objs:
        counts[o["cat"]] = counts.get(o["cat"], 0) + 1
    return [article(c) if n == 1 else f"{number_word(n)} {plural(c)}" for c, n in counts.items()]


def number_word(n: int) -> str:
    return inflect_engine().number_to_words(n) if 0 <= n <= 20 else str(n)


def fmt_t(x: float) -> str:
    s = f"{float(x):.1f}"
    return s[:-2] if s.endswith(".0") else s


_FRACTIONS = ((0.07, "less than a tenth"), (0.115, "about a tenth"), (0.14, "about an eighth"),
              (0.185, "about a sixth"), (0.225, "about a fifth"), (0.29, "about a quarter"),
              (0.4, "about a third"), (0.6, "about half"), (1.01, "more than half"))


def fraction_words(x: float) -> str:
    """0.21 -> 'about a fifth' (the nearest simple fraction, as a reader would estimate it)."""
    return next(w for hi, w in _FRACTIONS if x < hi)


def seconds_phrase(x: float) -> str:
    """0.5 -> 'half a second', 1.0 -> '1 second', 0.3 -> '0.3 seconds' (decimals count as one word)."""
    t = fmt_t(x)
    if t == "0.5":
        return "half a second"
    return "1 second" if t == "1" else f"{t} seconds"


def _grid(pos: str | None) -> tuple[int, int] | None:
    if pos in POSITIONS:
        i = POSITIONS.index(pos)
        return i // 3, i % 3
    return None


def relation(a: dict, b: dict) -> str:
    """Where a is relative to b: 'above and to the left of', 'to the right of', 'right next to'."""
    if a.get("_cx") is not None and b.get("_cx") is not None:
        dx, dy = a["_cx"] - b["_cx"], a["_cy"] - b["_cy"]
        h = "to the left of" if dx < -0.12 else ("to the right of" if dx > 0.12 else "")
        v = "above" if dy < -0.12 else ("below" if dy > 0.12 else "")
    else:
        ga, gb = _grid(a.get("pos")), _grid(b.get("pos"))
        if not ga or not gb:
            return "near"
        h = "to the left of" if ga[1] < gb[1] else ("to the right of" if ga[1] > gb[1] else "")
        v = "above" if ga[0] < gb[0] else ("below" if ga[0] > gb[0] else "")
    if h and v:
        return f"{v} and {h}"
    return h or v or "right next to"


class Facts:
    """The grounding of one media item, as caption-ready context dicts."""

    def __init__(self, modality: str, g: dict[str, Any], lex: dict[str, Any]):
        self.modality = modality
        self.g = g
        self._words: set[str] | None = None
        self.lex = lex
        scene = g.get("scene") or {}
        numbers = lex["numbers"]
        self.duration = g.get("duration_s")
        sc: dict[str, Any] = {
            "media": lex["media_caption"][modality],
            "media_opts": [lex["media_caption"][modality]] + list(lex.get("media_caption_alt", {}).get(modality, [])),
            "mood": scene.get("mood"),
            "mood_indef": article(scene["mood"]) if scene.get("mood") else None,
            "mood_opts": [scene["mood"]] + list(lex.get("mood_alt", {}).get(scene["mood"], [])) if scene.get("mood") else None,
            "dur": fmt_t(self.duration) if self.duration else None,
        }
        self.objs: list[dict[str, Any]] = []
        self.sounds: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        if modality == "audio":
            bg = scene.get("background")
            sc["bg"] = bg
            sc["abg"] = lex["audio_background"].get(bg) or (article(bg) if bg else "near silence")
            sc["abg_opts"] = [sc["abg"]] + list(lex.get("audio_background_alt", {}).get(bg, []))
            self._sounds(g.get("sounds") or [], lex)
            sc["sounds_list"] = join_and([article(s["src"]) for s in self.sounds]) or None
            if len(self.sounds) > 1:
                sc["first_ref"], sc["last_ref"] = self.sounds[0]["s_ref"], self.sounds[-1]["s_ref"]
            sc["sounds_count"] = number_word(len(self.sounds)) if len(self.sounds) > 1 else None
            sc["silent_abg"] = None if self.sounds else sc["abg"]  # only claim "only X" when nothing else sounds
            self._audio_events(g.get("events") or [])
        else:
            bg = scene.get("background")
            prep = lex.get("bg_prep", {}).get(bg, "in")
            from acd.checks.setting import name_shown

            shown_as = None
            if bg and not name_shown(g):
                # The frames do not show what makes it that backdrop (a top-down forest is green ground, a
                # low-angle beach is sky and sea): it is said as what is shown, never by its name.
                c = scene.get("background_colour") or "plain"
                bg, prep = f"{c} backdrop", "against"
                shown_as = [article(f"plain {c} backdrop"), article(f"{c} backdrop"), article(f"flat {c} background"),
                            article(f"even {c} background")]
            sc.update(
                bg=bg, bg_indef=article(bg) if bg else None, bg_colour=scene.get("background_colour"),
                bg_in=f"{prep} {article(bg)}" if bg else None, bg_in_cap=f"{prep.title()} {article(bg)}" if bg else None,
                # the other wordings describe the ground ("a sandy beach"): only when the ground is in view
                bg_indef_opts=shown_as or ([article(bg)] + (list(lex.get("background_alt", {}).get(bg, []))
                                                            if scene.get("ground_visible", True) else [])) if bg else None,
                lighting=lex["lighting_names"].get(scene.get("lighting"), scene.get("lighting")),
                vp_indef=article(scene["viewpoint"]) if scene.get("viewpoint") else None,
                vp_indef_opts=[article(scene["viewpoint"])] + list(lex.get("viewpoint_alt", {}).get(scene["viewpoint"], []))
                if scene.get("viewpoint") else None,
                viewpoint=scene.get("viewpoint"),
            )
            decor = [d for d in (scene.get("decorations") or []) if d]
            sc["decor"] = join_and(decor) or None          # "white clouds and blades of grass"
            dalt = lex.get("decor_alt", {})
            # each decoration's own wordings, drawn independently per sentence (compose.Writer._vary)
            sc["decor_parts"] = [[d] + list(dalt.get(d, [])) for d in decor] if decor else None
            sc["lighting_opts"] = ([sc["lighting"]] + list(lex.get("lighting_alt", {}).get(sc["lighting"], []))
                                   if sc.get("lighting") else None)
            sc["decor1"] = decor[0] if decor else None
            sc["decor2"] = decor[1] if len(decor) > 1 else None
            self._objects(g.get("objects") or [], lex)
            sc["objects_list"] = objects_list(self.objs, numbers)
            sc["objects_list_opts"] = _orders(self.objs, numbers)
            if sc["objects_list_opts"]:  # the same list with other size words ("a little red ball, a big ...")
                for k in (1, 2):
                    alt = [dict(o, indef=(o.get("indef_opts") or [o["indef"]])[k % len(o.get("indef_opts") or [1])])
                           for o in self.objs]
                    sc["objects_list_opts"] += [x for x in (objects_list(alt, numbers), objects_list(alt[::-1], numbers))
                                                if x not in sc["objects_list_opts"]]
            sc["many_list"] = sc["objects_list"] if len(self.objs) > 1 else None  # takes a plural verb
            sc["objects_cats"] = join_and(_cats_list(self.objs)) or None  # "a ball, two stars and a box"
            sc["many_cats"] = sc["objects_cats"] if len(self.objs) > 1 else None
            n = len(self.objs)
            sc["count_word"] = number_word(n) if n > 1 else None
            cam = g.get("camera") or {}
            self.camera = cam.get("motion")
            if self.camera:
                speed_adv = lex["speed_adv"].get(cam.get("speed"), "smoothly")
                tpl = lex["camera"].get(self.camera, "moves ({motion})")
                sc["cam"] = tpl.format(speed_adv=speed_adv, motion=self.camera)
                sc["cam_opts"] = [sc["cam"]] + [t.format(speed_adv=speed_adv, motion=self.camera)
                                                for t in lex.get("camera_alt", {}).get(self.camera, [])]
            self._video_events(g.get("events") or [])
        self.scene = sc

    # -- objects ----------------------------------------------------------------------------------
    def _objects(self, raw: list[dict], lex: dict) -> None:
        cats: dict[str, int] = {}
        cc: dict[tuple, int] = {}
        for o in raw:
            cats[o.get("category")] = cats.get(o.get("category"), 0) + 1
            cc[(o.get("colour"), o.get("category"))] = cc.get((o.get("colour"), o.get("category")), 0) + 1
        for o in raw:
            cat, colour, size, pos = o.get("category") or "object", o.get("colour"), o.get("size"), o.get("position")
            ref_core = f"{colour} {cat}" if colour else cat
            where = lex["where"].get(pos) or (f"at the {pos}" if pos else None)
            ref = f"the {ref_core}"
            if cc[(colour, o.get("category"))] > 1 and pos:
                ref = f"the {pos.replace(' ', '-')} {ref_core}"  # identical objects: tell them apart by place
            label = f"the {cat}" if cats[o.get("category")] == 1 else ref
            attrs = [a for a in (o.get("attributes") or []) if a]
            adjs, parts = split_attributes(attrs)
            adjs = [a for a in adjs if cat.lower() not in a.lower()]  # "a heart that looks heart-shaped" says nothing
            action = o.get("action")
            end_pos = o.get("end_position")
            moving = bool(action) and not any(w in action for w in _STILL_WORDS)
            moving = moving or bool(end_pos and pos and end_pos != pos)
            if action in lex.get("size_changing_actions", ()):
                size = None  # its size changes on screen: no single size word is true
            bbox = o.get("bbox")
            ctx = {
                "id": o.get("id"), "cat": cat, "colour": colour, "size": size, "pos": pos,
                "ref": ref, "label": label, "name": label,
                "indef": article(" ".join(x for x in (size, colour, cat) if x)),
                "indef_lean": article(" ".join(x for x in (colour, cat) if x)),
                "indef_opts": [article(" ".join(x for x in (sz, colour, cat) if x))
                               for sz in [size] + list(lex.get("size_alt", {}).get(size, []))] if size else None,
                # "a small round red ball": one of its adjectives said inside the noun phrase (then not again)
                "indef_adj": [(article(" ".join(x for x in (size, a, colour, cat) if x)), a) for a in adjs[:2]
                              if " " not in a] or None,
                "ref_opts": [ref] + ([f"the {cat}"] if cats[o.get("category")] == 1 else [])
                            + ([f"this {ref_core}"] if cc[(colour, o.get("category"))] == 1 else []),
                "adjs": join_and(adjs[:2]) or None,          # "round and shiny"
                "_adjs": adjs[:2],
                "parts": join_and(parts[:2]) or None,        # "a long tail and pointed ears"
                "adjs_opts": [join_and(adjs[:2]), join_and(adjs[:2][::-1])] if len(adjs) > 1 else None,
                "parts_opts": [join_and(parts[:2]), join_and(parts[:2][::-1])] if len(parts) > 1 else None,
                "part1": parts[0] if parts else None,
                "adj1": adjs[0] if adjs else None,
                "size_w": ("medium-sized" if size == "medium" else size) if size else None,
                "size_w_cap": ("Medium-sized" if size == "medium" else size.capitalize()) if size else None,
                "where": where, "at_pos": f"at the {pos}" if pos else None, "edge_note": lex["edge_note"].get(pos),
                "edge_note_opts": [lex["edge_note"][pos]] + list(lex.get("edge_note_alt", {}).get(pos, []))
                if pos in lex["edge_note"] else None,
                "moving": moving,
                "action": action if moving else None,
                "speed_adv": lex["speed_adv"].get(o.get("speed")) if moving else None,
                "end_where": lex["where"].get(end_pos) if end_pos and end_pos != pos else None,
                # A mover's start place is never "toward the lower left": after "begins its journey" or
                # "starts out" that reads as where it is heading, not where it is.
                "where_opts": [w for w in [where] + list(lex.get("where_alt", {}).get(pos, []))
                               if not (moving and w.startswith("toward"))] or None if where else None,
                "end_where_opts": ([lex["where"].get(end_pos)] + list(lex.get("where_alt", {}).get(end_pos, []))
                                   if end_pos and end_pos != pos and end_pos in lex["where"] else None),
                "_cx": (bbox[0] + bbox[2]) / 2 if bbox else None,
                "_cy": (bbox[1] + bbox[3]) / 2 if bbox else None,
            }
            if bbox and self.modality == "image":
                ctx["width_frac"] = fraction_words(bbox[2] - bbox[0])
                ctx["_area"] = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1])
            ctx["still_ref"] = None if moving else ref
            if moving and ctx["action"]:
                ctx["action_opts"] = [ctx["action"]] + list(lex.get("action_alt", {}).get(ctx["action"], []))
            if moving and not ctx["action"]:
                ctx["action"] = f"moves to the {end_pos}"
            self.objs.append(ctx)
        self.by_id = {o["id"]: o for o in self.objs}

    def _video_events(self, raw: list[dict]) -> None:
        for e in sorted(raw, key=lambda e: e.get("t", 0.0)):
            objs = [self.by_id[i] for i in e.get("objects", []) if i in self.by_id]
            if objs:
                self.events.append({"t": float(e.get("t", 0.0)), "type": e.get("type", "event"), "objs": objs})
            if e.get("type") == "appear":
                for o in objs:
                    o.setdefault("_t_appear", float(e.get("t", 0.0)))
                    o["t_in"] = fmt_t(o["_t_appear"]) if o["_t_appear"] > 0.05 else None
            if e.get("type") == "leave":  # it ends outside the frame: no place inside it is its end
                for o in objs:
                    o.update(end_where=None, end_where_opts=None, leaves=True)

    # -- sounds -----------------------------------------------------------------------------------
    def _sounds(self, raw: list[dict], lex: dict) -> None:
        dur = self.duration or max([s.get("end", 0.0) for s in raw] + [1.0])
        for s in sorted(raw, key=lambda s: s.get("start", 0.0)):
            src = s.get("source") or "sound"
            src = lex["sound_names"].get(src, src)  # "beeps" -> "series of beeps" (one countable thing)
            loud, pitch = s.get("loudness"), lex["pitch"].get(s.get("pitch"))
            quals = ", ".join(x for x in (loud, pitch) if x)
            louds = [loud] + list(lex.get("loudness_alt", {}).get(loud, [])) if loud else [None]
            alt_q = [", ".join(x for x in (ld, p) if x) for ld in louds
                     for p in [pitch] + list(lex.get("pitch_alt", {}).get(s.get("pitch"), []))][1:]
            when_key = when_bucket(s.get("start") or 0.0, dur)
            names = [src] + list(lex.get("sound_names_alt", {}).get(s.get("source"), []))
            self.sounds.append({
                "id": s.get("id"), "src": src, "s_ref": f"the {src}", "label": f"the {src}",
                "s_ref_opts": [f"the {n}" for n in names] if len(names) > 1 else None,
                "s_indef": article(f"{quals} {src}" if quals else src),
                "s_indef_opts": [article(f"{q} {n}" if q else n) for q in [quals] + alt_q for n in names],
                "loud": loud, "pitch": pitch, "pattern": s.get("pattern"),
                "loud_opts": louds if len(louds) > 1 else None,
                "when": lex["when_audio"][when_key],
                "when_opts": [lex["when_audio"][when_key]] + list(lex.get("when_audio_alt", {}).get(when_key, [])),
                "start": fmt_t(s.get("start", 0.0)), "end": fmt_t(s.get("end", 0.0)),
                "_start": float(s.get("start", 0.0)), "_end": float(s.get("end", 0.0)),
                "len_s": seconds_phrase(float(s.get("end", 0.0)) - float(s.get("start", 0.0)))
                if float(s.get("end", 0.0)) > float(s.get("start", 0.0)) else None,
                "kind": s.get("category"), "kind_indef": article(s["category"]) if s.get("category") else None,
            })
        for prev, cur in zip(self.sounds, self.sounds[1:]):  # what lies between one sound and the next
            gap = cur["_start"] - prev["_end"]
            cur["prev_ref"] = prev["s_ref"] if prev["src"] != cur["src"] else None
            cur["gap"] = seconds_phrase(gap) if gap >= 0.15 else None
            cur["overlap"] = gap < -0.05
        self.by_id = {s["id"]: s for s in self.sounds}

    def _audio_events(self, raw: list[dict]) -> None:
        if not raw:  # derive start/stop events from the sounds themselves
            raw = [{"t": s["_start"], "type": "start", "sounds": [s["id"]]} for s in self.sounds]
            raw += [{"t": s["_end"], "type": "stop", "sounds": [s["id"]]} for s in self.sounds]
        for e in sorted(raw, key=lambda e: (e.get("t", 0.0), e.get("type") != "start")):
            snds = [self.by_id[i] for i in e.get("sounds", []) if i in self.by_id]
            if snds:
                self.events.append({"t": float(e.get("t", 0.0)), "type": e.get("type", "start"), "objs": snds})

    # -- helpers ----------------------------------------------------------------------------------
    @property
    def things(self) -> list[dict[str, Any]]:
        """What content instructions can name: objects (image/video) or sounds (audio)."""
        return self.sounds if self.modality == "audio" else self.objs

    def ctx(self, *parts: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
        out = dict(self.scene)
        for p in parts:
            if p:
                out.update(p)
        out.update(extra)
        return out

    def words(self) -> set[str]:
        """Lower-case words appearing anywhere in the grounding (for 'is this value really there?')."""
        if self._words is None:
            import json
            import re

            self._words = set(re.findall(r"[a-z]+", json.dumps(self.g).lower()))
        return self._words
