"""Time the local speech models on this machine and report transcription accuracy.

    python bench/local_audio.py [--repeat N]

Prints the time to synthesise about 10 s of speech (local-tts, encoded to mp3), to
transcribe 30 s of speech (local-asr, from flac), to match a voice (local-voice-match),
their real-time factors (processing time / audio duration; below 1 is faster than real
time), and the word error rate of the recogniser on espeak recordings of known sentences.
Inputs are synthesised here; nothing is read from disk or the network.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hypereal.providers.local.audiocodec import decode_audio, encode_audio, resample
from hypereal.providers.local.speech import espeak, speech_file, synthesize
from hypereal.providers.local.transcribe import SAMPLE_RATE, transcribe
from hypereal.providers.local.voicematch import voice_match_file

# The espeak variant PocketSphinx's US English model recognises best.
ASR_VOICE = "en-us+f5"
SENTENCES = [
    "Please call me tomorrow morning at nine o'clock.",
    "I would like to order a pizza with cheese and tomatoes.",
    "The meeting has been moved to next Tuesday afternoon.",
    "Can you tell me how to get to the train station?",
    "We need three more chairs for the dinner party tonight.",
    "My phone number is five five five one two three four.",
    "The weather will be sunny with a light breeze.",
    "She bought a new car last week and drove it home.",
    "Turn left at the bank and walk two blocks north.",
    "Thank you very much for your help yesterday.",
]
TEN_SECONDS = (
    "Good morning, and welcome to the weekly update. Today we will talk about the new office, "
    "the summer schedule, and the plans for the team dinner next month. Please hold your questions until the end."
)


def timed(work: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def thirty_seconds_of_speech() -> bytes:
    rate = espeak().sample_rate
    pieces: list[np.ndarray] = []
    total = 0.0
    index = 0
    while total < 30.0:
        spoken = synthesize(SENTENCES[index % len(SENTENCES)], ASR_VOICE, 0.85)
        pieces += [spoken, np.zeros(rate // 2, np.float32)]
        total += len(spoken) / rate + 0.5
        index += 1
    audio = np.concatenate(pieces)[: 30 * rate]
    return encode_audio(audio, rate, "flac")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    rate = espeak().sample_rate
    rows: list[tuple[str, float, float]] = []

    tts_time, (_, tts_seconds) = timed(lambda: speech_file(TEN_SECONDS, "en-us", "mp3"), repeat)
    rows.append((f"local-tts, {tts_seconds:.1f} s of speech to mp3", tts_time, tts_seconds))

    long_audio = thirty_seconds_of_speech()
    asr_seconds = len(decode_audio(long_audio, SAMPLE_RATE)) / SAMPLE_RATE
    asr_time, _ = timed(lambda: transcribe(long_audio), repeat)
    rows.append((f"local-asr, {asr_seconds:.1f} s of flac", asr_time, asr_seconds))

    reference = encode_audio(synthesize(SENTENCES[0], "en-us+f3"), rate, "mp3")
    match_time, (_, match_seconds, _) = timed(lambda: voice_match_file(TEN_SECONDS, reference, "mp3"), repeat)
    rows.append((f"local-voice-match, {match_seconds:.1f} s of speech", match_time, match_seconds))

    print(f"{'task':<44} {'seconds':>8} {'real-time factor':>17}")
    for name, seconds, audio_seconds in rows:
        print(f"{name:<44} {seconds:>8.2f} {seconds / audio_seconds:>17.3f}")

    errors = total_words = 0
    print("\nword error rate of local-asr on espeak recordings (voice en-us+f5):")
    for sentence in SENTENCES:
        audio = resample(synthesize(sentence, ASR_VOICE, 0.85), rate, SAMPLE_RATE)
        padded = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), audio, np.zeros(SAMPLE_RATE // 2, np.float32)])
        heard = transcribe(encode_audio(padded, SAMPLE_RATE, "wav")).text
        reference_words = words(sentence)
        mistakes = edit_distance(reference_words, words(heard))
        errors += mistakes
        total_words += len(reference_words)
        print(f"  {mistakes / len(reference_words):5.0%}  {sentence!r} -> {heard!r}")
    print(f"overall WER: {errors / total_words:.1%} over {total_words} words")


if __name__ == "__main__":
    main()
