"""Regenerate the prompt WAVs from prompts/<lang>/manifest.toml with espeak-ng and sox.

Speech: espeak-ng (Mandarin voice ``cmn-latn-pinyin`` when installed, else ``cmn``; English ``en-us``)
-> sox: trim leading/trailing silence, 10/20 ms fades, resample to 8000 Hz mono 16-bit, normalise to
-3 dBFS. Music (``[music]`` names): a 20 s chord progression plucked by ``sox synth``, built once and
copied to every language. sox runs with ``-R -D`` (repeatable, no dither) so builds are reproducible.

Why ``cmn-latn-pinyin``: the plain ``cmn`` voice of espeak-ng 1.51 (Debian 12) reads the tone digits of
its internal pinyin aloud in English ("qing three"); the pinyin variant reads Chinese text correctly
and lets a manifest's ``[speak]`` table spell polyphones in pinyin (``chong2新``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .media.prompts import MANIFEST, SAMPLE_RATE, Manifest, load_manifest

__all__ = ["PromptBuildError", "build_music", "build_prompts", "build_speech", "default_root", "voice_for"]

LANGUAGE_VOICES: dict[str, tuple[str, ...]] = {"zh": ("cmn-latn-pinyin", "cmn"), "en": ("en-us", "en")}
SPEED_WPM = {"zh": 150, "en": 155}
PEAK_DB = -3.0
MUSIC_PEAK_DB = -6.0  # hold music a little below speech
SILENCE_THRESHOLD = "0.1%"
MUSIC_SECONDS = 20.0
# (bass, three chord tones) per 2.5 s bar: C  Am  F  G  C  Am/C  F  G
MUSIC_CHORDS = (
    ("C3", "E4", "G4", "C5"),
    ("A2", "E4", "A4", "C5"),
    ("F2", "C4", "F4", "A4"),
    ("G2", "D4", "G4", "B4"),
    ("C3", "E4", "G4", "C5"),
    ("A2", "C4", "E4", "A4"),
    ("F2", "A3", "C4", "F4"),
    ("G2", "B3", "D4", "G4"),
)
_INSTALL_HINT = {"espeak-ng": "apt-get install espeak-ng", "sox": "apt-get install sox"}


class PromptBuildError(RuntimeError):
    """A tool is missing or failed, or the request names unknown prompts/languages."""


def default_root() -> Path:
    """prompts/ next to the softswitch package (the repository checkout)."""
    return Path(__file__).resolve().parent.parent / "prompts"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PromptBuildError(
            f"{name} not found on PATH; it is needed to build prompts (Debian: {_INSTALL_HINT[name]})"
        )
    return path


def _run(cmd: Sequence[str], *, stdin: bytes | None = None) -> None:
    try:
        proc = subprocess.run(list(cmd), input=stdin, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PromptBuildError(f"{cmd[0]} failed: {e}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise PromptBuildError(f"{' '.join(cmd[:3])} ... exited with {proc.returncode}: {err}")


_voice_cache: dict[str, str] = {}


def voice_for(lang_or_voice: str, espeak: str | None = None) -> str:
    """The espeak-ng voice for a language code ("zh", "en"), preferring the first installed one;
    anything else is taken as a voice name."""
    candidates = LANGUAGE_VOICES.get(lang_or_voice)
    if candidates is None:
        return lang_or_voice
    cached = _voice_cache.get(lang_or_voice)
    if cached:
        return cached
    espeak = espeak or _tool("espeak-ng")
    proc = subprocess.run([espeak, "--voices"], capture_output=True, text=True, check=False)
    installed = {line.split()[1].lower() for line in proc.stdout.splitlines()[1:] if len(line.split()) > 1}
    voice = next((v for v in candidates if v.lower() in installed), candidates[-1])
    _voice_cache[lang_or_voice] = voice
    return voice


def _sox_finish(sox: str, src: Path, out: Path, *, trim: bool, peak_db: float = PEAK_DB) -> None:
    """src -> out: (trim silence,) fades, 8 kHz mono 16-bit, normalised; written atomically."""
    effects: list[str] = []
    if trim:
        # cut leading silence, reverse, cut (trailing) silence, fade out, reverse back, fade in
        silence = ["silence", "1", "0.02", SILENCE_THRESHOLD]
        effects += [*silence, "reverse", *silence, "fade", "t", "0.02", "reverse", "fade", "t", "0.01"]
    effects += ["rate", str(SAMPLE_RATE), "channels", "1", "norm", str(peak_db)]
    tmp = out.with_name(f".{out.stem}.tmp.wav")
    try:
        _run([sox, "-R", "-D", "-V1", str(src), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
              "-e", "signed-integer", str(tmp), *effects])  # fmt: skip
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def build_speech(text: str, voice: str, out: Path, *, speed: int = 150) -> Path:
    """Speak ``text`` with espeak-ng ``voice`` into ``out`` (8 kHz mono 16-bit, trimmed, normalised)."""
    espeak, sox = _tool("espeak-ng"), _tool("sox")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prompt-") as tmp:
        raw = Path(tmp) / "raw.wav"
        # UTF-8 on stdin (-b 1), not argv: independent of the locale and of a leading "-".
        _run([espeak, "-b", "1", "-v", voice, "-s", str(speed), "-w", str(raw), "--stdin"],
             stdin=text.encode("utf-8"))  # fmt: skip
        _sox_finish(sox, raw, out, trim=True)
    return out


def build_music(out: Path, seconds: float = MUSIC_SECONDS) -> Path:
    """Gentle hold music with sox synth: plucked, arpeggiated chords (2.5 s each) with reverb."""
    sox = _tool("sox")
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = seconds / len(MUSIC_CHORDS)
    with tempfile.TemporaryDirectory(prefix="moh-") as tmp:
        bars: list[str] = []
        for i, notes in enumerate(MUSIC_CHORDS):
            path = Path(tmp) / f"bar{i}.wav"
            synth = [arg for note in notes for arg in ("pluck", note)]
            _run([sox, "-R", "-D", "-V1", "-r", "48000", "-c", str(len(notes)), "-n", "-r", "16000", "-c", "1", str(path),
                  "synth", f"{bar}", *synth, "delay", "0", "0.18", "0.36", "0.54", "remix", "-",
                  "fade", "t", "0.005", f"{bar}", "0.4"])  # fmt: skip
            bars.append(str(path))
        mixed = Path(tmp) / "mixed.wav"
        _run([sox, "-R", "-D", "-V1", *bars, str(mixed), "lowpass", "1800", "reverb", "40", "50", "60",
              "gain", "-n", "-6", "fade", "t", "0.5", f"{seconds}", "1.5"])  # fmt: skip
        _sox_finish(sox, mixed, out, trim=False, peak_db=MUSIC_PEAK_DB)
    return out


def build_prompts(
    root: Path, languages: Iterable[str] = ("zh", "en"), only: Iterable[str] | None = None
) -> list[Path]:
    """(Re)build the WAVs of ``languages`` under ``root`` from their manifests; ``only`` restricts to
    those prompt names (each must exist in at least one of the languages). Returns the written files."""
    root = Path(root)
    langs = list(dict.fromkeys(languages))
    manifests: dict[str, Manifest] = {}
    for lang in langs:
        path = root / lang / MANIFEST
        if not path.exists():
            raise PromptBuildError(f"no manifest for language {lang!r}: {path}")
        manifests[lang] = load_manifest(path)
    wanted = set(only) if only is not None else None
    if wanted is not None:
        unknown = wanted - {n for m in manifests.values() for n in m.prompts}
        if unknown:
            raise PromptBuildError(
                f"unknown prompt names for {', '.join(langs)}: {', '.join(sorted(unknown))}"
            )

    jobs: list[tuple[str, str, Path, int]] = []  # (text, voice spec, out, speed)
    music: list[Path] = []
    for lang, m in manifests.items():
        for name in m.prompts:
            if wanted is not None and name not in wanted:
                continue
            out = root / lang / f"{name}.wav"
            if name in m.music:
                if m.music[name] != "moh":
                    raise PromptBuildError(f"{m.path}: [music] {name}: unknown generator {m.music[name]!r}")
                music.append(out)
                continue
            spec = m.voices.get(name, lang)
            jobs.append((m.spoken_text(name), spec, out, SPEED_WPM.get(spec, SPEED_WPM.get(lang, 150))))
    _tool("sox")
    if jobs:
        _tool("espeak-ng")
    speech = [(text, voice_for(spec), out, speed) for text, spec, out, speed in jobs]

    written: list[Path] = []
    if music:
        built = build_music(music[0])
        written.append(built)
        for other in music[1:]:
            shutil.copyfile(built, other)
            written.append(other)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        futures = [
            pool.submit(build_speech, text, voice, out, speed=speed) for text, voice, out, speed in speech
        ]
        written += [f.result() for f in futures]
    return written
