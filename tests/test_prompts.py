"""prompts/ (manifests and WAVs), softswitch.media.prompts.PromptLibrary and softswitch.prompts_build."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from softswitch.cli import main as cli_main
from softswitch.codecs.g711 import alaw_encode, ulaw_decode, ulaw_encode
from softswitch.media import say
from softswitch.media.prompts import (
    FRAME_SAMPLES,
    PromptError,
    PromptLibrary,
    PromptNotFound,
    load_manifest,
    read_wav,
)
from softswitch.prompts_build import PromptBuildError, build_prompts, default_root, voice_for
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent / "prompts"
LANGS = ("zh", "en")
# Number vocabulary that exists in one language only (documented in prompts/README.md).
ZH_ONLY = {"unit_shi", "unit_bai", "unit_qian", "unit_wan", "unit_yi"} | {
    f"word_{w}" for w in ("dian", "jiao", "fen", "gu", "fu", "ling", "liang")
}
EN_ONLY = {n for n in say.EN_NUMBER_WORDS if n.startswith("num_")} | {
    "word_point", "word_minus", "word_shares", "word_share", "word_shares_of", "word_share_of",
}  # fmt: skip
REQUIRED = {
    "welcome", "main_menu", "menu_language", "enter_account", "enter_pin", "login_ok", "login_failed",
    "login_locked", "invalid_entry", "no_input", "goodbye", "system_busy", "quote_enter_code", "quote_name",
    "quote_current_price", "quote_up", "quote_down", "quote_unknown_code", "balance_total", "balance_available",
    "positions_none", "position_holding", "positions_menu", "order_buy_or_sell", "order_enter_code",
    "order_enter_price", "order_enter_quantity", "order_you_are_buying", "order_you_are_selling",
    "order_at_price", "order_confirm", "order_placed", "order_rejected", "order_reject_insufficient_cash",
    "order_reject_insufficient_position", "order_reject_price_limit", "order_reject_lot_size",
    "cancel_enter_order", "cancel_confirm", "cancel_done", "cancel_failed", "queue_position_before",
    "queue_position_after", "queue_wait_before", "queue_wait_after", "queue_please_hold", "queue_agents_busy",
    "queue_callback_option", "queue_voicemail_option", "voicemail_after_beep", "voicemail_saved", "moh",
    "word_percent", "word_yuan", *(f"digit_{d}" for d in range(10)),
}  # fmt: skip


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    return PromptLibrary(ROOT).load(LANGS)


# -- the committed files -----------------------------------------------------------------------------


def test_manifests_match_files() -> None:
    for lang in LANGS:
        manifest = load_manifest(ROOT / lang / "manifest.toml")
        wavs = {p.stem for p in (ROOT / lang).glob("*.wav")}
        assert wavs == set(manifest.prompts), f"{lang}: WAVs without manifest entry or entries without WAV"
        others = {p.name for p in (ROOT / lang).iterdir()} - {f"{n}.wav" for n in wavs} - {"manifest.toml"}
        assert not others, f"stray files in prompts/{lang}: {others}"
        assert manifest.music == {"moh": "moh"}


def test_same_names_in_both_languages() -> None:
    zh = set(load_manifest(ROOT / "zh" / "manifest.toml").prompts)
    en = set(load_manifest(ROOT / "en" / "manifest.toml").prompts)
    assert zh - ZH_ONLY == en - EN_ONLY
    assert ZH_ONLY.issubset(zh) and EN_ONLY.issubset(en)
    assert REQUIRED.issubset(zh) and REQUIRED.issubset(en)


def test_say_vocabulary_exists_in_both_languages(library: PromptLibrary) -> None:
    for lang in LANGS:
        missing = say.prompt_names(lang) - library.names(lang)
        assert not missing, f"{lang}: say.py can emit {missing} but there is no such prompt"
        stocks = {n for n in library.names(lang) if n.startswith("stock_")}
        assert stocks, "demo stock names"
        for name in stocks:
            assert say.say_stock(name[6:], lang, library.names(lang)) == [name]


def test_wav_format_and_levels() -> None:
    total = 0
    for lang in LANGS:
        for path in sorted((ROOT / lang).glob("*.wav")):
            total += path.stat().st_size
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.format, info.subtype) == (
                8000,
                1,
                "WAV",
                "PCM_16",
            ), path
            pcm = read_wav(path)
            peak_db = 20 * np.log10(np.abs(pcm.astype(np.int32)).max() / 32768)
            if path.stem == "moh":
                assert 19.5 <= info.duration <= 20.5
                assert -6.5 <= peak_db <= -5.5
                continue
            assert 0.15 <= info.duration <= 25, path
            assert -3.6 <= peak_db <= -2.5, (path, peak_db)
            # trimmed: sound starts and stops within ~40 ms of the ends (fades aside)
            loud = np.flatnonzero(np.abs(pcm) > 300)
            assert loud[0] < 320 and pcm.size - loud[-1] < 320, path
    assert total < 10_000_000, f"prompts/ is {total} bytes"


def test_hold_music_is_shared_and_not_speech() -> None:
    assert (ROOT / "zh" / "moh.wav").read_bytes() == (ROOT / "en" / "moh.wav").read_bytes()
    pcm = read_wav(ROOT / "zh" / "moh.wav").astype(np.float64)
    # Eight plucked chords, one every 2.5 s: the energy envelope restarts at every bar.
    bars = pcm[: 8 * 20000].reshape(8, 20000)
    starts, ends = np.abs(bars[:, 800:4000]).mean(axis=1), np.abs(bars[:, 14000:18000]).mean(axis=1)
    assert (starts[1:] > ends[1:] * 1.5).all()


# -- PromptLibrary -----------------------------------------------------------------------------------


def test_library_encodes_per_codec(library: PromptLibrary) -> None:
    assert set(library.languages) == set(LANGS)
    assert library.has("zh", "welcome") and not library.has("zh", "nope") and not library.has("fr", "welcome")
    pcm = library.pcm("en", "goodbye")
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert np.array_equal(pcm, read_wav(ROOT / "en" / "goodbye.wav"))
    assert library.encoded("en", "goodbye", "pcmu") == ulaw_encode(pcm).tobytes()
    assert library.encoded("en", "goodbye", "PCMA") == alaw_encode(pcm).tobytes()
    assert library.text("zh", "word_liang") == "两"


@pytest.mark.parametrize(("codec", "silence"), [("pcmu", 0xFF), ("pcma", 0xD5)])
def test_frames_are_padded(library: PromptLibrary, codec: str, silence: int) -> None:
    for lang in LANGS:
        for name in ("welcome", "digit_7", "moh"):
            n = library.pcm(lang, name).size
            frames = library.frames(lang, name, codec)
            assert frames.dtype == np.uint8 and frames.flags.c_contiguous
            assert frames.shape == (-(-n // FRAME_SAMPLES), FRAME_SAMPLES)
            flat = frames.reshape(-1)
            assert flat[:n].tobytes() == library.encoded(lang, name, codec)
            assert (flat[n:] == silence).all()
            pcm_frames = library.pcm_frames(lang, name)
            assert pcm_frames.shape == frames.shape and not pcm_frames.reshape(-1)[n:].any()
            assert not frames.flags.writeable and not library.pcm(lang, name).flags.writeable


def test_sequence_joins_without_inner_padding(library: PromptLibrary) -> None:
    names = say.say_money("12345.67", "zh")
    seq = library.sequence("zh", names, "pcmu")
    total = sum(library.pcm("zh", n).size for n in names)
    assert seq.shape == (-(-total // FRAME_SAMPLES), FRAME_SAMPLES)
    joined = np.concatenate([library.pcm("zh", n) for n in names])
    assert np.array_equal(ulaw_decode(seq.reshape(-1)[:total]), ulaw_decode(ulaw_encode(joined)))
    gapped = library.sequence("zh", names, "pcma", gap_ms=50)
    assert gapped.size >= total + 400 * (len(names) - 1)
    with pytest.raises(ValueError):
        library.sequence("zh", [], "pcmu")
    with pytest.raises(PromptNotFound):
        library.sequence("zh", ["digit_1", "nope"], "pcmu")


def test_library_lookup_errors(library: PromptLibrary) -> None:
    with pytest.raises(PromptNotFound, match="no prompt 'nope' in language 'zh'"):
        library.pcm("zh", "nope")
    with pytest.raises(PromptNotFound, match="language 'fr' not loaded"):
        library.frames("fr", "welcome", "pcmu")
    with pytest.raises(PromptNotFound, match="codec 'g729'"):
        library.frames("zh", "welcome", "g729")
    with pytest.raises(ValueError, match="g729"):
        PromptLibrary(ROOT, codecs=("pcmu", "g729"))


def test_l16_frames(tmp_path: Path) -> None:
    lang = tmp_path / "en"
    lang.mkdir()
    (lang / "manifest.toml").write_text('[prompts]\ntone = "a tone"\n')
    pcm = (np.sin(np.arange(500) / 5) * 10000).astype(np.int16)
    sf.write(str(lang / "tone.wav"), pcm, 8000, subtype="PCM_16")
    lib = PromptLibrary(tmp_path, codecs=("pcmu", "l16")).load(["en"])
    frames = lib.frames("en", "tone", "l16")
    assert frames.shape == (4, 320)
    assert lib.encoded("en", "tone", "l16") == pcm.astype(">i2").tobytes()
    assert not frames.reshape(-1)[1000:].any()
    with pytest.raises(PromptNotFound):
        lib.frames("en", "tone", "pcma")
    with pytest.raises(PromptNotFound):
        lib.sequence("en", ["tone"], "pcma")
    seq = lib.sequence("en", ["tone", "tone"], "l16", gap_ms=5)
    assert seq.shape == (7, 320)  # 500 + 40 + 500 samples
    assert (
        seq.reshape(-1)[:2080].tobytes()
        == np.concatenate([pcm, np.zeros(40, np.int16), pcm]).astype(">i2").tobytes()
    )


def _one_prompt_root(tmp_path: Path, write: bool = True) -> Path:
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / "manifest.toml").write_text('[prompts]\nhello = "你好"\n')
    return tmp_path / "zh" / "hello.wav"


@pytest.mark.parametrize(
    ("rate", "channels", "problem"),
    [(16000, 1, "16000 Hz"), (8000, 2, "2 channel"), (None, 1, "cannot read WAV"), (8000, 0, "no audio")],
)
def test_bad_wav_is_named(tmp_path: Path, rate: int | None, channels: int, problem: str) -> None:
    path = _one_prompt_root(tmp_path)
    if rate is None:
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    else:
        data = np.zeros((800, channels) if channels else (0, 1), dtype=np.int16)
        sf.write(str(path), data, rate, subtype="PCM_16")
    with pytest.raises(PromptError, match=problem) as info:
        PromptLibrary(tmp_path).load(["zh"])
    assert str(path) in str(info.value)


def test_missing_wav_is_named(tmp_path: Path) -> None:
    path = _one_prompt_root(tmp_path)
    with pytest.raises(PromptError, match=r"hello\.wav"):
        PromptLibrary(tmp_path).load(["zh"])
    assert not path.exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[prompts]\nBad-Name = "x"\n', "snake_case"),
        ('[prompts]\na = "x"\n[speak]\nb = "y"\n', r"\[speak\] names not in \[prompts\]: b"),
        ('[prompts]\na = "x"\n[extra]\nb = "y"\n', "unknown tables extra"),
        ('[prompts]\na = ""\n', "non-empty"),
        ('[prompts]\na = 1\n', "non-empty string"),
        ("[prompts]\n", "no \\[prompts\\]"),
        ("[prompts\n", "manifest.toml"),
    ],
)  # fmt: skip
def test_manifest_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "manifest.toml"
    path.write_text(text)
    with pytest.raises(PromptError, match=problem) as info:
        load_manifest(path)
    assert str(path) in str(info.value)


# -- building ----------------------------------------------------------------------------------------


def _mini_root(tmp_path: Path) -> Path:
    for lang in LANGS:
        (tmp_path / lang).mkdir()
        src = load_manifest(ROOT / lang / "manifest.toml")
        lines = ["[prompts]"] + [
            f'{n} = "{src.prompts[n]}"' for n in ("digit_5", "welcome", "menu_language", "moh")
        ]
        lines += ["[speak]", f'welcome = "{src.spoken_text("welcome")}"', "[voices]"]
        lines += [f'menu_language = "{src.voices["menu_language"]}"', "[music]", 'moh = "moh"']
        (tmp_path / lang / "manifest.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_build_one_prompt(tmp_path: Path) -> None:
    require_tool("espeak-ng")
    require_tool("sox")
    root = _mini_root(tmp_path)
    written = build_prompts(root, languages=["zh"], only=["digit_5"])
    assert written == [root / "zh" / "digit_5.wav"]
    info = sf.info(str(written[0]))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    pcm = read_wav(written[0])
    assert 0.1 < pcm.size / 8000 < 1.5
    assert -3.6 <= 20 * np.log10(np.abs(pcm.astype(np.int32)).max() / 32768) <= -2.5
    assert not (root / "en" / "digit_5.wav").exists() and not (root / "zh" / "welcome.wav").exists()
    assert sorted(p.name for p in (root / "zh").iterdir()) == [
        "digit_5.wav",
        "manifest.toml",
    ]  # no temp files left


def test_build_all_of_a_small_root_and_load_it(tmp_path: Path) -> None:
    require_tool("espeak-ng")
    require_tool("sox")
    root = _mini_root(tmp_path)
    written = build_prompts(root)
    assert sorted(p.relative_to(root).as_posix() for p in written) == sorted(
        f"{lang}/{n}.wav" for lang in LANGS for n in ("digit_5", "welcome", "menu_language", "moh")
    )
    assert (root / "zh" / "moh.wav").read_bytes() == (root / "en" / "moh.wav").read_bytes()
    lib = PromptLibrary(root).load()
    assert lib.pcm("zh", "moh").size == 160000
    # the committed hold music is what the builder makes (sox runs in repeatable mode)
    assert np.array_equal(lib.pcm("en", "moh"), read_wav(ROOT / "en" / "moh.wav"))


def test_build_reports_missing_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _mini_root(tmp_path)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "espeak-ng" else real_which(name))
    if real_which("sox"):
        with pytest.raises(PromptBuildError, match=r"espeak-ng not found on PATH.*apt-get install espeak-ng"):
            build_prompts(root, only=["digit_5"])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(PromptBuildError, match="sox not found"):
        build_prompts(root, only=["moh"])
    assert not list(root.glob("*/*.wav"))


def test_build_rejects_unknown_names_and_languages(tmp_path: Path) -> None:
    root = _mini_root(tmp_path)
    with pytest.raises(PromptBuildError, match=r"unknown prompt names.*bogus"):
        build_prompts(root, only=["digit_5", "bogus"])
    with pytest.raises(PromptBuildError, match="no manifest for language 'fr'"):
        build_prompts(root, languages=["fr"])


def test_cli_prompts_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _mini_root(tmp_path)
    assert cli_main(["prompts", "build", "--root", str(root), "bogus"]) == 1
    assert "bogus" in capsys.readouterr().err
    require_tool("espeak-ng")
    require_tool("sox")
    assert cli_main(["prompts", "build", "--root", str(root), "--lang", "en", "digit_5", "welcome"]) == 0
    assert "2 prompts written" in capsys.readouterr().out
    assert sorted(p.name for p in (root / "en").glob("*.wav")) == ["digit_5.wav", "welcome.wav"]
    assert not list((root / "zh").glob("*.wav"))


def test_voices_and_default_root() -> None:
    assert default_root() == ROOT
    assert voice_for("en-gb") == "en-gb"  # a voice name passes through
    if shutil.which("espeak-ng"):
        assert voice_for("zh") in ("cmn-latn-pinyin", "cmn")
        assert voice_for("en") in ("en-us", "en")
