"""Synthetic audio: 1-4 sound events in sequence over a background, 16 kHz mono PCM-16 WAV.

A sound is a pulse train (the vocabulary's pattern: `count` pulses of `length` s, one every `interval`
s) of a voice (bell, whistle, drum, ...), normalised to the peak of its loudness class. Sounds never
overlap and are separated by at least GAP seconds, so "then" is always true; start / end times are on a
10 ms grid and are exactly where the samples begin and end.

Cross-machine note: voices use np.sin / np.exp, whose last bit can differ between CPU code paths; the
int16 quantisation absorbs that except in the astronomically rare case of a value within ~1e-16 of a
rounding boundary.
"""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from acd.synth import pick, r3, rng_for, vocab

GAP = 0.15  # seconds of background between two sounds
LEAD = 0.1  # earliest start
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _env(n: int, sr: int, attack: float = 0.01, release: float = 0.02) -> np.ndarray:
    """Linear attack / release ramps (no clicks)."""
    e = np.ones(n)
    a, r = min(n // 2, int(attack * sr)), min(n // 2, int(release * sr))
    if a:
        e[:a] = np.linspace(0, 1, a, endpoint=False)
    if r:
        e[n - r:] = np.linspace(1, 0, r)
    return e


def _lowpass(x: np.ndarray, a: float) -> np.ndarray:
    """One-pole low-pass, y[n] = (1-a) x[n] + a y[n-1]."""
    return lfilter([1 - a], [1, -a], x)


# Voices: (pulse length in samples, base frequency, sample rate, rng) -> float pulse, any scale.
def bell(n, f, sr, rng):
    t = np.arange(n) / sr
    parts = sum(a * np.sin(2 * np.pi * f * k * t) for k, a in ((1, 1.0), (2.0, 0.5), (2.76, 0.4), (5.4, 0.2)))
    return parts * np.exp(-t / 0.18) * _env(n, sr, 0.002, 0.02)


def whistle(n, f, sr, rng):
    t = np.arange(n) / sr
    freq = f * (1 + 0.015 * np.sin(2 * np.pi * 6 * t))  # vibrato
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * _env(n, sr, 0.02, 0.03)


def drum(n, f, sr, rng):
    t = np.arange(n) / sr
    freq = f * (1 + 1.5 * np.exp(-t / 0.02))  # pitch drop of a struck membrane
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.07)
    click = rng.standard_normal(n) * np.exp(-t / 0.005) * 0.3
    return (body + click) * _env(n, sr, 0.001, 0.01)


def beep(n, f, sr, rng):
    t = np.arange(n) / sr
    return (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 3 * f * t)) * _env(n, sr, 0.005, 0.005)


def siren(n, f, sr, rng):
    t = np.arange(n) / sr
    dur = n / sr
    freq = f * (1 + 0.45 * np.sin(np.pi * t / dur) ** 2)  # rises then falls over the pulse
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * _env(n, sr, 0.05, 0.08)


def clap(n, f, sr, rng):
    t = np.arange(n) / sr
    noise = rng.standard_normal(n)
    a = np.exp(-2 * np.pi * f / sr)
    band = noise - _lowpass(noise, a)  # high-passed at ~f: "high" claps are brighter
    return band * np.exp(-t / 0.015) * _env(n, sr, 0.001, 0.005)


def hum(n, f, sr, rng):
    t = np.arange(n) / sr
    tone = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3))
    return tone * (1 + 0.1 * np.sin(2 * np.pi * 3 * t)) * _env(n, sr, 0.05, 0.08)


def chirp(n, f, sr, rng):
    t = np.arange(n) / sr
    freq = f * (1 + t / (n / sr))  # sweeps up an octave
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.sin(np.pi * np.arange(n) / n)


def engine(n, f, sr, rng):
    t = np.arange(n) / sr
    saw = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 7))
    rumble = _lowpass(rng.standard_normal(n), 0.97) * 4
    return (saw + rumble) * (1 + 0.4 * np.sin(2 * np.pi * 12 * t)) * _env(n, sr, 0.08, 0.1)


def knock(n, f, sr, rng):
    t = np.arange(n) / sr
    body = np.sin(2 * np.pi * f * t) + 0.6 * np.sin(2 * np.pi * 2.3 * f * t)
    return (body + 0.2 * rng.standard_normal(n)) * np.exp(-t / 0.015) * _env(n, sr, 0.001, 0.005)


def horn(n, f, sr, rng):
    t = np.arange(n) / sr
    return sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 7)) * _env(n, sr, 0.02, 0.04)


VOICES = {f.__name__: f for f in (bell, whistle, drum, beep, siren, clap, hum, chirp, engine, knock, horn)}


def background_noise(kind: str, level: float, n: int, sr: int, rng) -> np.ndarray:
    if kind == "silence" or level <= 0:
        return np.zeros(n)
    t = np.arange(n) / sr
    if kind == "low hum":
        x = np.sin(2 * np.pi * 60 * t) + 0.5 * np.sin(2 * np.pi * 120 * t)
    elif kind == "rain-like noise":
        white = rng.standard_normal(n)
        x = white - _lowpass(white, 0.8)  # hiss
        drops = np.zeros(n)
        idx = rng.integers(0, n, int(n / sr * 40))
        drops[idx] = rng.uniform(2, 5, len(idx))
        x = x + _lowpass(drops, 0.6)
    elif kind == "wind":
        x = _lowpass(rng.standard_normal(n), 0.995) * (1 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t))
    else:
        raise ValueError(f"unknown audio background {kind!r}")
    return x / (np.abs(x).max() + 1e-12) * level


def pattern_pulses(spec) -> tuple[int, float, float]:
    count, length, interval = spec
    return int(count), float(length), float(interval)


def render_audio(seed: int, index: int) -> tuple[bytes, dict, dict]:
    """(wav bytes, grounding dict, probe facts)."""
    v = vocab()
    va = v["audio"]
    rng = rng_for(seed, "audio", index)
    sr = int(va["sample_rate"])
    duration = float(pick(rng, va["durations"]))
    n_total = int(round(duration * sr))
    bg_name = pick(rng, sorted(va["backgrounds"]))
    x = background_noise(bg_name, float(va["backgrounds"][bg_name]["level"]), n_total, sr, rng)

    want = int(pick(rng, {int(k): w for k, w in va["sounds_per_clip"].items()}))
    names = [str(s) for s in rng.permutation(sorted(va["sounds"]))]
    sounds, t = [], LEAD + float(rng.integers(0, 10)) / 100
    for name in names:
        if len(sounds) == want:
            break
        spec = va["sounds"][name]
        pname = pick(rng, sorted(spec["patterns"]))
        count, length, interval = pattern_pulses(spec["patterns"][pname])
        span = (count - 1) * interval + length
        start = round(t, 2)
        end = round(start + span, 2)
        if end > duration - 0.05:
            continue  # does not fit in what is left; a shorter sound might
        pitch = pick(rng, ["high", "low"])
        loudness = pick(rng, sorted(va["loudness"]))
        s0, s1 = int(round(start * sr)), int(round(end * sr))
        sig = np.zeros(s1 - s0)
        plen = int(round(length * sr))
        for k in range(count):
            o = int(round(k * interval * sr))
            m = min(plen, len(sig) - o)
            sig[o:o + m] += VOICES[spec["voice"]](plen, float(spec["pitch"][pitch]), sr, rng)[:m]
        sig *= float(va["loudness"][loudness]) / (np.abs(sig).max() + 1e-12)
        x[s0:s1] += sig
        sounds.append({"id": f"s{len(sounds) + 1}", "source": name, "category": spec["category"],
                       "start": r3(start), "end": r3(end), "pitch": pitch, "loudness": loudness,
                       "pattern": pname, "_mood": spec["mood"]})
        t = end + GAP + float(rng.integers(0, 30)) / 100

    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, sr, format="WAV", subtype="PCM_16")
    loudest = next((s for s in sounds if s["loudness"] == "loud"), sounds[0])
    mood = "busy" if len(sounds) >= int(va["busy_from"]) else loudest["_mood"]
    for s in sounds:
        s.pop("_mood")
    events = []
    for s in sounds:
        events.append({"t": s["start"], "type": "start", "sounds": [s["id"]]})
        events.append({"t": s["end"], "type": "stop", "sounds": [s["id"]]})
    events.sort(key=lambda e: (e["t"], e["type"] == "start"))  # at equal times a stop comes first
    grounding = {"kind": "audio", "duration_s": duration, "sample_rate": sr,
                 "scene": {"background": bg_name, "mood": mood}, "sounds": sounds, "events": events}
    return buf.getvalue(), grounding, {"sample_rate": sr, "channels": 1, "duration_s": duration}
