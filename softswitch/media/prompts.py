"""Prompt library: the WAVs of prompts/<lang>/ loaded once and pre-encoded per codec into 20 ms frames.

Layout: ``<root>/<lang>/manifest.toml`` (``[prompts]`` name = "text", optional ``[speak]``, ``[voices]``,
``[music]``; see prompts/README.md) and ``<root>/<lang>/<name>.wav`` (8 kHz, mono, 16-bit).

For every prompt the library keeps the PCM and, per codec, an ``(n_frames, 160)`` uint8 array (320 bytes
per row for l16) padded at the end with the codec's silence, so the engine sends frame ``i`` of a prompt
as ``lib.frames(lang, name, "pcmu")[i]`` with no per-packet work.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from softswitch.codecs.g711 import alaw_encode, ulaw_encode

__all__ = [
    "CODEC_ENCODERS",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "Manifest",
    "Prompt",
    "PromptError",
    "PromptLibrary",
    "PromptNotFound",
    "load_manifest",
]

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
NAME_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
MANIFEST = "manifest.toml"


def _l16_frames(pcm: np.ndarray) -> npt.NDArray[np.uint8]:
    """Big-endian 16-bit samples as bytes: (n, 160) int16 -> (n, 320) uint8."""
    be = np.ascontiguousarray(pcm, dtype=">i2")
    return be.view(np.uint8).reshape(*pcm.shape[:-1], pcm.shape[-1] * 2)


# codec name -> (frames of int16 PCM, shape (n, 160)) -> (n, bytes per frame) uint8
CODEC_ENCODERS: dict[str, Callable[[np.ndarray], npt.NDArray[np.uint8]]] = {
    "pcmu": ulaw_encode,
    "pcma": alaw_encode,
    "l16": _l16_frames,
}


class PromptError(ValueError):
    """A manifest or WAV file is unusable; the message names the file."""


class PromptNotFound(KeyError):
    """No such language, prompt or pre-encoded codec in the library."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class Manifest:
    """One language's manifest: ``prompts`` (name -> text) plus the optional build hints."""

    path: Path
    prompts: dict[str, str]
    speak: dict[str, str] = field(default_factory=dict)  # text given to the synthesiser instead
    voices: dict[str, str] = field(default_factory=dict)  # "zh" / "en" / an espeak-ng voice
    music: dict[str, str] = field(default_factory=dict)  # made by sox synth, not speech

    def spoken_text(self, name: str) -> str:
        return self.speak.get(name, self.prompts[name])


def load_manifest(path: Path) -> Manifest:
    """Read and check a manifest.toml; PromptError naming the file on any problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PromptError(f"{path}: {e}") from None
    unknown = set(data) - {"prompts", "speak", "voices", "music"}
    if unknown:
        raise PromptError(f"{path}: unknown tables {', '.join(sorted(unknown))}")
    tables: dict[str, dict[str, str]] = {}
    for table in ("prompts", "speak", "voices", "music"):
        raw = data.get(table, {})
        if not isinstance(raw, dict):
            raise PromptError(f"{path}: [{table}] must be a table")
        for name, value in raw.items():
            if not isinstance(value, str) or not value.strip():
                raise PromptError(f"{path}: [{table}] {name} must be a non-empty string")
            if table == "prompts" and not NAME_RE.match(name):
                raise PromptError(f"{path}: prompt name {name!r} is not snake_case ASCII")
        tables[table] = dict(raw)
    if not tables["prompts"]:
        raise PromptError(f"{path}: no [prompts]")
    for table in ("speak", "voices", "music"):
        stray = set(tables[table]) - set(tables["prompts"])
        if stray:
            raise PromptError(f"{path}: [{table}] names not in [prompts]: {', '.join(sorted(stray))}")
    return Manifest(path, tables["prompts"], tables["speak"], tables["voices"], tables["music"])


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    """The samples of an 8 kHz mono WAV as int16; PromptError naming the file otherwise."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            if f.samplerate != SAMPLE_RATE or f.channels != 1:
                raise PromptError(
                    f"{path}: {f.samplerate} Hz, {f.channels} channel(s); prompts must be "
                    f"{SAMPLE_RATE} Hz mono (rebuild with `softswitch prompts build`)"
                )
            pcm = f.read(dtype="int16")
    except PromptError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / OSError
        raise PromptError(f"{path}: cannot read WAV: {e}") from None
    if pcm.size == 0:
        raise PromptError(f"{path}: no audio")
    return np.ascontiguousarray(pcm, dtype=np.int16)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Prompt:
    """One loaded prompt: ``pcm`` (int16), ``pcm_frames`` ((n, 160) int16) and per-codec ``frames``."""

    __slots__ = ("frames", "lang", "name", "pcm", "pcm_frames")

    def __init__(self, lang: str, name: str, pcm: np.ndarray, codecs: Iterable[str]) -> None:
        self.lang = lang
        self.name = name
        self.pcm: npt.NDArray[np.int16] = _frozen(pcm)
        n_frames = -(-pcm.size // FRAME_SAMPLES)
        padded = np.zeros(n_frames * FRAME_SAMPLES, dtype=np.int16)
        padded[: pcm.size] = pcm
        self.pcm_frames: npt.NDArray[np.int16] = _frozen(padded.reshape(n_frames, FRAME_SAMPLES))
        # Encoding the zero padding gives each codec's own silence code (0xFF for PCMU, 0xD5 for PCMA).
        self.frames: dict[str, npt.NDArray[np.uint8]] = {
            codec: _frozen(np.ascontiguousarray(CODEC_ENCODERS[codec](self.pcm_frames))) for codec in codecs
        }

    @property
    def samples(self) -> int:
        return int(self.pcm.size)

    @property
    def n_frames(self) -> int:
        return int(self.pcm_frames.shape[0])

    @property
    def duration(self) -> float:
        return self.pcm.size / SAMPLE_RATE

    def __repr__(self) -> str:
        return f"<Prompt {self.lang}/{self.name} {self.duration:.2f}s>"


class PromptLibrary:
    """All prompts of ``root`` (``<root>/<lang>/manifest.toml`` + WAVs), loaded by :meth:`load`.

    ``codecs`` are the codecs to pre-encode (names from :data:`CODEC_ENCODERS`).
    """

    def __init__(self, root: Path | str, codecs: Sequence[str] = ("pcmu", "pcma")) -> None:
        self.root = Path(root)
        self.codecs = tuple(c.lower() for c in codecs)
        for c in self.codecs:
            if c not in CODEC_ENCODERS:
                raise ValueError(
                    f"cannot pre-encode prompts for codec {c!r} (known: {', '.join(CODEC_ENCODERS)})"
                )
        self.manifests: dict[str, Manifest] = {}
        self._prompts: dict[str, dict[str, Prompt]] = {}
        self._bytes: dict[tuple[str, str, str], bytes] = {}

    def load(self, languages: Iterable[str] = ("zh", "en")) -> PromptLibrary:
        """Read every prompt of ``languages`` (each WAV once); PromptError names a bad file. Returns self."""
        for lang in languages:
            manifest = load_manifest(self.root / lang / MANIFEST)
            prompts: dict[str, Prompt] = {}
            for name in manifest.prompts:
                pcm = read_wav(self.root / lang / f"{name}.wav")
                prompts[name] = Prompt(lang, name, pcm, self.codecs)
            self.manifests[lang] = manifest
            self._prompts[lang] = prompts
            self._bytes = {k: v for k, v in self._bytes.items() if k[0] != lang}
        return self

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._prompts)

    def has(self, lang: str, name: str) -> bool:
        return name in self._prompts.get(lang, ())

    def names(self, lang: str) -> frozenset[str]:
        return frozenset(self._lang(lang))

    def _lang(self, lang: str) -> dict[str, Prompt]:
        try:
            return self._prompts[lang]
        except KeyError:
            raise PromptNotFound(
                f"language {lang!r} not loaded (loaded: {', '.join(self._prompts)})"
            ) from None

    def prompt(self, lang: str, name: str) -> Prompt:
        prompts = self._lang(lang)
        try:
            return prompts[name]
        except KeyError:
            raise PromptNotFound(f"no prompt {name!r} in language {lang!r}") from None

    def text(self, lang: str, name: str) -> str:
        self.prompt(lang, name)
        return self.manifests[lang].prompts[name]

    def pcm(self, lang: str, name: str) -> npt.NDArray[np.int16]:
        """The samples (read-only int16, unpadded)."""
        return self.prompt(lang, name).pcm

    def pcm_frames(self, lang: str, name: str) -> npt.NDArray[np.int16]:
        """(n_frames, 160) int16, zero-padded at the end."""
        return self.prompt(lang, name).pcm_frames

    def frames(self, lang: str, name: str, codec_name: str) -> npt.NDArray[np.uint8]:
        """(n_frames, bytes per frame) uint8 pre-encoded with ``codec_name``, padded with its silence."""
        frames = self.prompt(lang, name).frames
        try:
            return frames[codec_name]
        except KeyError:
            codec = codec_name.lower()
            if codec in frames:
                return frames[codec]
            raise PromptNotFound(
                f"prompts are not pre-encoded for codec {codec_name!r} ({self.codecs})"
            ) from None

    def encoded(self, lang: str, name: str, codec_name: str) -> bytes:
        """The whole prompt encoded with ``codec_name``, without the frame padding."""
        key = (lang, name, codec_name.lower())
        data = self._bytes.get(key)
        if data is None:
            p = self.prompt(lang, name)
            frames = self.frames(lang, name, codec_name)
            per_sample = frames.shape[1] // FRAME_SAMPLES
            data = self._bytes[key] = frames.reshape(-1)[: p.samples * per_sample].tobytes()
        return data

    def sequence(
        self, lang: str, names: Sequence[str], codec_name: str, *, gap_ms: int = 0
    ) -> npt.NDArray[np.uint8]:
        """Prompts played back to back (e.g. a say_* result) as one (n_frames, bytes per frame) array.

        The prompts are joined without their frame padding (plus ``gap_ms`` of silence between them),
        and only the end is padded.
        """
        if not names:
            raise ValueError("empty prompt sequence")
        prompts = [self.prompt(lang, n) for n in names]
        codec = codec_name.lower()
        if codec not in self.codecs:
            raise PromptNotFound(f"prompts are not pre-encoded for codec {codec_name!r} ({self.codecs})")
        silence = CODEC_ENCODERS[codec](np.zeros((1, 1), dtype=np.int16)).reshape(-1)  # one sample
        gap = np.tile(silence, gap_ms * SAMPLE_RATE // 1000) if gap_ms > 0 else None
        parts: list[np.ndarray] = []
        for i, p in enumerate(prompts):
            if i and gap is not None:
                parts.append(gap)
            parts.append(p.frames[codec].reshape(-1)[: p.samples * silence.size])
        flat = np.concatenate(parts)
        width = FRAME_SAMPLES * silence.size
        n_frames = -(-flat.size // width)
        out = np.tile(silence, n_frames * FRAME_SAMPLES)
        out[: flat.size] = flat
        return out.reshape(n_frames, width)
