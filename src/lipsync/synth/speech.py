"""Speech for the synthetic world: espeak-ng utterances, and the mouth opening they drive.

The renderer's truth is :func:`mouth_opening_from_audio`: a deterministic map from a 16 kHz waveform to
one opening value per 25 fps video frame (0 = lips closed, 1 = wide open). It depends only on the audio,
so the opening the renderer *would* draw for any driving audio can be computed without rendering, which
is what the sync score of :mod:`lipsync.synth.measure` compares a generated mouth against.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import resample_poly

from lipsync.media import MODEL_FPS, MODEL_SAMPLE_RATE

# Short, varied sentences (plosives, long vowels, pauses) so mouth motion differs clip to clip.
SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "We were away a year ago.",
    "Bob bought a big blue balloon at the park.",
    "Open the window, it is getting warm in here.",
    "I would like a cup of coffee with milk, please.",
    "My mother made maple muffins on Monday morning.",
    "How are you doing today?",
    "The rain in Spain stays mainly in the plain.",
    "Papa paid for the pizza and the popcorn.",
    "She sells sea shells by the sea shore.",
    "Can you hear me now? Yes, I can hear you.",
    "Our meeting starts at nine o'clock sharp.",
    "Where did you put the keys to the car?",
    "A large red apple fell from the old tree.",
    "Every morning I walk along the river.",
    "Turn left at the bakery, then go straight on.",
    "This is a very important announcement.",
    "Wow, that was amazing!",
    "Peter Piper picked a peck of pickled peppers.",
    "Alright, let's get started with the first topic.",
    "The museum opens again on the first of August.",
    "Mmm, maybe, I am not sure about that.",
    "Ahoy, all hands on deck!",
    "Oh no, I forgot my umbrella at home.",
    "Bananas, oranges and mangoes are on sale.",
    "The baby bear ate a bowl of porridge.",
    "Do you know the way to the airport?",
    "We will meet again when the moon is full.",
    "Happy birthday, I hope you have a wonderful day.",
    "Big pumpkins grow best in open fields.",
    "Thank you all for coming this evening.",
    "Ha ha, that is a very funny joke.",
    "Bring me the map and the lamp, please.",
    "The weather today is cloudy with a chance of rain.",
    "I am going to the market to buy some bread.",
    "Hello there, my name is Maya and I make music.",
    "Two hundred people waited by the gate.",
    "Apples, pears, plums, and peaches.",
    "Could you open the box on the table?",
    "Amazing, absolutely amazing, I am speechless.",
    "Maybe we should ask Paul about the plan.",
)

# espeak-ng's own (non-MBROLA) English voices, and voice variants that change timbre and sex.
LANGUAGES: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
VARIANTS: tuple[str, ...] = (
    "", "+f1", "+f2", "+f3", "+f4", "+f5", "+m1", "+m2", "+m3", "+m4", "+m5", "+m7", "+klatt",
    "+Annie", "+linda", "+steph", "+david", "+paul", "+rob",
)

# Mouth-opening map (renderer's truth): frame loudness in dB relative to the clip's loud frames.
OPENING_RANGE_DB = 30.0  # levels this far below the reference (95th percentile) map to 0
OPENING_REF_PERCENTILE = 95.0
OPENING_MIN_REF_DB = -45.0  # reference never below this, so silence or hiss keeps the mouth closed
OPENING_SMOOTH_FRAMES = 0.8  # Gaussian sigma of the level over time, in video frames
OPENING_FLOOR = 0.2  # openings below this after normalising close fully (pauses, breath)


@dataclass(frozen=True)
class Voice:
    """One speaker: an espeak-ng voice name plus speaking rate (words/min) and pitch (0-99)."""

    name: str
    rate: int
    pitch: int


@dataclass(frozen=True)
class SpeechClip:
    """A clip of speech at 16 kHz with what was said and when.

    Attributes:
        wave: ``(samples,)`` float32 in [-1, 1] at 16 kHz.
        voice: the speaker.
        sentences: the utterances, in order.
        onsets_s: start time of each utterance in seconds (negative when it began before the clip).
    """

    wave: np.ndarray
    voice: Voice
    sentences: tuple[str, ...]
    onsets_s: tuple[float, ...]


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on PATH (Debian package ``espeak-ng``)."""
    return shutil.which("espeak-ng") is not None


def sample_voice(rng: np.random.Generator) -> Voice:
    """Draw a speaker: language, variant, rate 130-200 wpm, pitch 25-75."""
    name = str(rng.choice(LANGUAGES)) + str(rng.choice(VARIANTS))
    return Voice(name=name, rate=int(rng.integers(130, 201)), pitch=int(rng.integers(25, 76)))


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """Speak ``text`` with espeak-ng.

    Returns:
        ``(samples,)`` float32 at 16 kHz, peak-normalised to 0.9 (espeak-ng writes 22.05 kHz int16).
    """
    if not espeak_available():
        raise RuntimeError("espeak-ng not found: install the Debian package (apt-get install -y espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        cmd = ["espeak-ng", "-z", "-v", voice.name, "-s", str(voice.rate), "-p", str(voice.pitch),
               "-w", str(path), text]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not path.exists():
            raise RuntimeError(f"espeak-ng failed for voice {voice.name!r}: {result.stderr.strip()[:200]}")
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    audio = resample_poly(pcm.astype(np.float32) / 32768.0, MODEL_SAMPLE_RATE, rate).astype(np.float32)
    return _trim_silence(audio) * (0.9 / max(float(np.abs(audio).max()), 1e-6))


def _trim_silence(audio: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Cut leading and trailing near-silence so pauses between utterances are ours to choose."""
    loud = np.flatnonzero(np.abs(audio) > threshold * max(float(np.abs(audio).max()), 1e-9))
    return audio[loud[0]:loud[-1] + 1] if loud.size else audio


def speech_clip(seconds: float, rng: np.random.Generator, voice: Voice | None = None) -> SpeechClip:
    """Utterances separated by random pauses (0.15-0.8 s), cut to exactly ``seconds``.

    The clip starts at a random point of the speech stream (maybe mid-sentence), so two clips share no
    structure at fixed times (no common leading silence) and their openings are uncorrelated on average.

    Args:
        seconds: clip length; the wave has ``round(seconds * 16000)`` samples.
        rng: source of all randomness (sentences, pauses, gains, start, and the voice when not given).
        voice: the speaker; one is drawn when None.
    """
    if seconds <= 0:
        raise ValueError(f"seconds={seconds} must be positive")
    voice = voice or sample_voice(rng)
    total = int(round(seconds * MODEL_SAMPLE_RATE))
    start = int(rng.uniform(0.0, 3.0) * MODEL_SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    sentences, onsets = [], []
    filled = 0
    while filled < start + total:
        text = str(rng.choice(SENTENCES))
        gain = 10 ** (rng.uniform(-3.0, 0.0) / 20)  # a little loudness variation between utterances
        speech = synthesize(text, voice) * gain
        pause = np.zeros(int(rng.uniform(0.15, 0.8) * MODEL_SAMPLE_RATE), np.float32)
        if filled + speech.size > start:  # the utterance is (at least partly) inside the clip
            sentences.append(text)
            onsets.append((filled - start) / MODEL_SAMPLE_RATE)
        pieces += [speech, pause]
        filled += speech.size + pause.size
    wave16k = np.concatenate(pieces)[start:start + total].astype(np.float32)
    return SpeechClip(wave16k, voice, tuple(sentences), tuple(onsets))


def frame_levels_db(wave16k: np.ndarray, num_frames: int, fps: float = MODEL_FPS) -> np.ndarray:
    """RMS level in dBFS of each video frame's audio (40 ms at 25 fps), zero-padded past the end.

    Args:
        wave16k: ``(samples,)`` mono audio at 16 kHz.
        num_frames: number of video frames T.

    Returns:
        ``(T,)`` float64 levels in dB (silence is about -100 dB).
    """
    hop = MODEL_SAMPLE_RATE / fps
    need = int(np.ceil(num_frames * hop))
    audio = np.zeros(need, np.float64)
    n = min(need, wave16k.shape[0])
    audio[:n] = wave16k[:n]
    edges = np.round(np.arange(num_frames + 1) * hop).astype(int)
    power = np.add.reduceat(audio ** 2, edges[:-1]) / np.diff(edges)
    return 10.0 * np.log10(power + 1e-10)


def mouth_opening_from_audio(wave16k: np.ndarray, num_frames: int, fps: float = MODEL_FPS) -> np.ndarray:
    """The renderer's mouth opening for each video frame, a pure function of the audio.

    Loudness per 40 ms frame in dB, smoothed over time, placed on a 30 dB scale below the clip's loud
    frames (95th percentile, never below -45 dBFS so silence stays closed), then a floor: the quietest
    20% of that scale (pauses, breath, consonant closures) gives fully closed lips.

    Args:
        wave16k: ``(samples,)`` mono float audio at 16 kHz.
        num_frames: T, the number of 25 fps video frames to cover (audio is zero-padded or cut).

    Returns:
        ``(T,)`` float32 in [0, 1].
    """
    wave16k = np.asarray(wave16k, dtype=np.float64)
    if wave16k.ndim != 1:
        raise ValueError(f"wave16k must be mono (samples,), got shape {wave16k.shape}")
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be at least 1")
    level = frame_levels_db(wave16k, num_frames, fps)
    ref = max(float(np.percentile(level, OPENING_REF_PERCENTILE)), OPENING_MIN_REF_DB)
    low = ref - OPENING_RANGE_DB
    # Clamp before smoothing so -100 dB silence does not drag neighbouring speech frames shut.
    level = gaussian_filter1d(np.clip(level, low - 6.0, ref + 6.0), OPENING_SMOOTH_FRAMES, mode="nearest")
    scaled = np.clip((level - low) / OPENING_RANGE_DB, 0.0, 1.0)
    return np.clip((scaled - OPENING_FLOOR) / (1.0 - OPENING_FLOOR), 0.0, 1.0).astype(np.float32)
