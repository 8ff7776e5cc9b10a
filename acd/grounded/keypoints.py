"""AnyCapEval-style key points for a synthetic item: the facts a good caption for (type, instruction)
must cover, derived from the grounding (as the benchmark's `key_point` lists are for real items)."""
from __future__ import annotations

import json
import random
from typing import Any

from acd.grounded.compose import Writer
from acd.grounded.facts import Facts, fmt_t, relation
from acd.grounded.phrasing import load_phrasing


def _appearance(o: dict) -> str:
    bits = [x for x in (o.get("size"), o.get("colour"), o.get("attrs")) if x]
    return f"describe {o['ref']}'s appearance ({', '.join(bits)})" if bits else f"mention {o['ref']}"


def key_points(modality: str, instruction_type: str, grounding: dict[str, Any] | str,
               instruction: str | None = None) -> list[str]:
    ph = load_phrasing()
    g = json.loads(grounding) if isinstance(grounding, str) else grounding
    f = Facts(modality, g, ph.lexicon)
    plan = Writer(ph, f, random.Random(0)).plan(instruction_type, instruction)
    sc = f.scene
    targets = [f.by_id[i] for i in plan.target_ids if i in f.by_id]
    kp: list[str] = []
    bg = f"describe the background ({', '.join(x for x in (sc.get('bg'), sc.get('bg_colour')) if x)})" if sc.get("bg") else None
    if modality == "audio":
        if instruction_type == "event":
            for e in f.events:
                names = ", ".join(s["src"] for s in e["objs"])
                kp.append(f"mention that the {names} {'starts' if e['type'] == 'start' else 'stops'} (at {fmt_t(e['t'])} seconds)")
            kp.append("keep the sound events in chronological order")
        else:
            kp += [f"mention {s['s_indef']}" + (f" ({s['pattern']})" if s.get("pattern") and instruction_type == "detail" else "")
                   for s in f.sounds]
            if instruction_type == "detail":
                kp.append(f"mention the background sound ({sc['abg']})")
        return kp or [f"mention the background sound ({sc['abg']})"]
    if instruction_type == "instance":
        ex = f.by_id.get(plan.excluded_id)
        kp += [f"mention {o['indef']}" for o in f.objs if not ex or o["cat"] != ex["cat"]]
        kp += [bg] if bg else []
        if ex:
            kp.append(f"no mention of {ex['label']}")
        return kp
    if instruction_type == "appearance":
        return [_appearance(o) for o in (targets or f.objs[:1])]
    if instruction_type == "position":
        ts = targets or f.objs[:1]
        kp = [f"describe {o['ref']}'s position ({o['pos']})" for o in ts]
        kp += [f"mention {a['ref']} is {relation(a, b)} {b['ref']}" for i, a in enumerate(ts) for b in ts[i + 1:]]
        return kp
    if instruction_type == "action":
        o = targets[0] if targets else (f.objs[0] if f.objs else None)
        if o is None:
            return []
        if not o.get("moving"):
            return [f"mention that {o['ref']} stays still"]
        kp = [f"describe {o['ref']}'s motion ({o['action']}{', ' + o['speed_adv'] if o.get('speed_adv') else ''})"]
        if o.get("end_where"):
            kp.append(f"mention where {o['ref']} ends ({o['end_where']})")
        return kp
    if instruction_type == "event":
        for e in f.events:
            kp.append(f"mention that {' and '.join(o['ref'] for o in e['objs'])} {e['type']} (at {fmt_t(e['t'])} seconds)")
        if kp:
            kp.append("keep the events in chronological order")
        return kp or ["state that no object enters, collides or leaves"]
    if instruction_type == "camera":
        cam = g.get("camera") or {}
        return [f"describe the camera movement ({cam.get('motion', 'static')}{', ' + cam['speed'] if cam.get('speed') else ''})"]
    if instruction_type == "background":
        kp = [bg] if bg else []
        if sc.get("lighting"):
            kp.append(f"mention the lighting ({sc['lighting']})")
        return kp + ["no description of the foreground objects"]
    # style types: the main content
    objs = f.objs if instruction_type == "detail" else f.objs[:3]
    kp = [f"mention {o['indef']}" for o in objs]
    if bg and instruction_type != "brief":
        kp.append(bg)
    if instruction_type == "detail" and sc.get("lighting"):
        kp.append(f"mention the lighting ({sc['lighting']})")
    if instruction_type == "detail" and modality == "video" and sc.get("cam"):
        kp.append(f"describe the camera ({(g.get('camera') or {}).get('motion')})")
    return kp
