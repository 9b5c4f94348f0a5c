"""Audio augmentations on waveforms (B, S), before the network's log-mel front-end: pitch and speed.

Audio datasets keep waveforms and compute their features inside the network (see
:mod:`deepwell.data.audio` for why), so these run on the training batch's waveforms and every batch
draws afresh; validation and test waveforms are never touched. The 1-D signal augmentations
(``shift``, ``amplitude``, ``noise``, ``stretch``) apply to waveforms as well.

- ``pitch:2`` shifts the pitch by a number of semitones uniform in [-2, 2], keeping the duration
  (``librosa.effects.pitch_shift``: a phase-vocoder time stretch, then resampling).
- ``speed:0.1`` plays the sound at a speed factor uniform in [0.9, 1.1], keeping the pitch
  (``librosa.effects.time_stretch``: a factor 1.1 makes it 1/1.1 as long); the result is cut or
  zero-padded back to the example's length.

librosa works on NumPy arrays, one example at a time, on the CPU: a few milliseconds per second of
audio (the first call in a process also loads librosa's compiled kernels, about a second).

Example::

    augment = build_augmentation(["pitch:2", "speed:0.1"], (16000,), seed=0, inputs=splits.encoding)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field

from deepwell.data.audio import AudioEncoding, fit_length
from deepwell.data.augment.base import Augmentation, Fraction, Params, _uniform, register_for
from deepwell.errors import ConfigError, missing_extra

__all__ = ["PitchShift", "Speed", "change_speed", "pitch_shift"]

# Phase-vocoder window: about 64 ms (512 samples at 8 kHz, 1024 at 16 kHz). librosa's default 2048 samples
# (256 ms at 8 kHz) smears onsets: measured, a 0.4 s tone sped up 2x sounded for 0.26 s instead of 0.2 s.
_WINDOW_SECONDS = 0.064


def _librosa():
    try:
        import librosa
    except ImportError:
        raise missing_extra("librosa", "audio", "pitch and speed augmentation") from None
    return librosa


def _n_fft(sample_rate: int, samples: int) -> int:
    """A power of two near 64 ms, at most the signal's length."""
    wanted = 2 ** int(round(np.log2(_WINDOW_SECONDS * sample_rate)))
    return int(min(wanted, 2 ** int(np.floor(np.log2(max(samples, 16))))))


def pitch_shift(waveform: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """``waveform`` (S,) with its pitch moved by ``semitones`` (12 = one octave up); same length."""
    if semitones == 0:
        return waveform
    return _librosa().effects.pitch_shift(waveform, sr=sample_rate, n_steps=float(semitones),
                                          n_fft=_n_fft(sample_rate, len(waveform)))


def change_speed(waveform: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """``waveform`` (S,) played ``factor`` times as fast, pitch kept: about S / factor samples long."""
    if factor == 1:
        return waveform
    return _librosa().effects.time_stretch(waveform, rate=float(factor), n_fft=_n_fft(sample_rate, len(waveform)))


def _per_example(x: torch.Tensor, values: torch.Tensor, transform) -> torch.Tensor:
    """Apply ``transform(waveform, value)`` to each example of (B, S) or (B, 1, S) on the CPU, fit back to S samples."""
    waveforms = x.detach().reshape(len(x), -1).cpu().numpy().astype(np.float32)
    samples = waveforms.shape[1]
    out = np.stack([fit_length(np.asarray(transform(w, float(v)), dtype=np.float32), samples)
                    for w, v in zip(waveforms, values.tolist())])
    return torch.from_numpy(out).to(x.device, x.dtype).reshape(x.shape)


class PitchShift(Augmentation):
    """Shift each waveform's pitch by a number of semitones uniform in [-semitones, semitones].

    ``params``: ``semitones`` (B,).
    """

    def __init__(self, semitones: float, sample_rate: int) -> None:
        self.semitones, self.sample_rate = semitones, sample_rate

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"semitones": _uniform(-self.semitones, self.semitones, batch_size, generator, "cpu")}

    def apply(self, x, params):
        return _per_example(x, params["semitones"], lambda w, steps: pitch_shift(w, self.sample_rate, steps))


class Speed(Augmentation):
    """Play each waveform at a speed factor uniform in [1 - amount, 1 + amount] (pitch kept), fit back to its length.

    ``params``: ``factor`` (B,).
    """

    def __init__(self, amount: float, sample_rate: int) -> None:
        self.amount, self.sample_rate = amount, sample_rate

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"factor": _uniform(1 - self.amount, 1 + self.amount, batch_size, generator, "cpu")}

    def apply(self, x, params):
        return _per_example(x, params["factor"], lambda w, factor: change_speed(w, self.sample_rate, factor))


def _check_audio(name: str, inputs: Any) -> AudioEncoding:
    if not isinstance(inputs, AudioEncoding):
        raise ConfigError(f"Augmentation '{name}' needs audio waveforms and their sample rate (the wav source).")
    return inputs


# --- registry entries: the signature is the schema; input_shape and inputs are context -------------


@register_for("audio", "pitch")
def _pitch(semitones: Annotated[float, Field(gt=0, le=24)] = 2.0, *, input_shape: Sequence[int], inputs: Any) -> Augmentation:
    """Shift the pitch by up to this many semitones (duration kept)."""
    return PitchShift(semitones, _check_audio("pitch", inputs).sample_rate)


@register_for("audio", "speed")
def _speed(amount: Fraction = 0.1, *, input_shape: Sequence[int], inputs: Any) -> Augmentation:
    """Change the speed by a factor uniform in [1 - amount, 1 + amount] (pitch kept)."""
    return Speed(amount, _check_audio("speed", inputs).sample_rate)
