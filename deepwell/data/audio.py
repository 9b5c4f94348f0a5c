"""Audio as waveforms: WAV files read with soundfile, resampled to one rate, cut or padded to one length.

Where the features are computed, and why: the dataset keeps **waveforms** (N, samples), and the
log-mel features are the network's first layer (:class:`deepwell.models.frontends.LogMel`: a
``torch.stft`` with librosa's mel filter bank). Pitch and speed augmentation change the waveform, so
they must run before the features; the training loop hands ``batch_transform`` one batch of the
training tensors, so with waveforms there the augmentation sees waveforms, every batch draws afresh,
validation and test data are never augmented (the loop never transforms them), and a trained run
predicts from waveforms or WAV files directly. The alternative, features in the dataset and
augmented copies recomputed per epoch, would need the waveforms kept beside the features and a
second data path through the loop.

Example::

    waveforms, labels, names = read_wav_folder("speech/", sample_rate=16000, duration=1.0)
    waveforms.shape  # (N, 16000)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from deepwell.data.files import class_folders
from deepwell.errors import CheckpointError, DataError, missing_extra

__all__ = ["AudioEncoding", "read_wav", "read_wav_folder", "WAV_SUFFIXES"]

WAV_SUFFIXES = (".wav",)


def _soundfile():
    try:
        import soundfile
    except ImportError:
        raise missing_extra("soundfile", "audio", "reading WAV files") from None
    return soundfile


def _librosa():
    try:
        import librosa
    except ImportError:
        raise missing_extra("librosa", "audio", "audio features and augmentation") from None
    return librosa


def fit_length(waveform: np.ndarray, samples: int) -> np.ndarray:
    """Cut ``waveform`` (L,) to its first ``samples`` values, or pad it with zeros at the end."""
    if len(waveform) >= samples:
        return waveform[:samples]
    return np.pad(waveform, (0, samples - len(waveform)))


def read_wav(path: str | Path, sample_rate: int, samples: int | None = None) -> np.ndarray:
    """One WAV file as a mono float32 waveform at ``sample_rate`` (resampled when the file's rate differs).

    Args:
        path: the file.
        sample_rate: the rate to return (Hz); a file at another rate is resampled (librosa, soxr).
        samples: cut or zero-pad to this many samples; None keeps the whole file.

    Raises:
        DataError: missing file, not a .wav file, a file soundfile cannot decode, or an empty file.
    """
    path = Path(path)
    if path.suffix.lower() not in WAV_SUFFIXES:
        raise DataError(f"'{path}' is not a WAV file (suffix '{path.suffix or 'none'}'); expected a .wav file. "
                        "Convert it, e.g. `ffmpeg -i in.mp3 out.wav`.")
    if not path.is_file():
        raise DataError(f"WAV file '{path}' not found. Give the path of an existing .wav file.")
    soundfile = _soundfile()
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (L, channels)
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as error:
        raise DataError(f"Cannot read '{path}' as a WAV file ({error}). Replace the file or remove it from the folder.") from None
    if len(data) == 0:
        raise DataError(f"WAV file '{path}' holds no samples; remove it or record it again.")
    waveform = data.mean(axis=1)  # mono: the average of the channels
    if rate != sample_rate:
        waveform = _librosa().resample(waveform, orig_sr=rate, target_sr=sample_rate).astype(np.float32)
    return waveform if samples is None else fit_length(waveform, samples)


def read_wav_folder(path: str | Path, sample_rate: int, duration: float) -> tuple[Tensor, np.ndarray, list[str]]:
    """Read a folder with one sub-folder of WAV files per class into waveforms (N, samples).

    Args:
        path: the folder; each sub-folder's name is a class name (e.g. ``yes/``, ``no/``).
        sample_rate: every file is resampled to this rate (Hz).
        duration: seconds per example; longer files are cut, shorter ones zero-padded.

    Returns:
        (float32 waveforms (N, round(duration * sample_rate)), class indices (N,), class names sorted).

    Raises:
        DataError: missing folder, no class sub-folders, a class without .wav files, an unreadable file.
    """
    class_dirs = class_folders(path, "Audio", ".wav files", "yes/, no/")
    samples = int(round(duration * sample_rate))
    waveforms, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in WAV_SUFFIXES)
        if not files:
            raise DataError(f"Class folder '{class_dir}' has no .wav files; add some or remove the folder.")
        for file in files:
            waveforms.append(read_wav(file, sample_rate, samples))
            labels.append(label)
    return torch.from_numpy(np.stack(waveforms)), np.asarray(labels, dtype=np.int64), [d.name for d in class_dirs]


@dataclass(frozen=True)
class AudioEncoding:
    """How waveforms were made and how the network's log-mel front-end reads them.

    Args:
        sample_rate: samples per second of every waveform.
        samples: samples per example (duration x rate).
        n_mels: mel bands of the log-mel features (the 1-D CNN's input channels).
        n_fft: STFT window length in samples.
        hop_length: samples between STFT frames.
    """

    kind: ClassVar[str] = "audio"
    sample_rate: int
    samples: int
    n_mels: int
    n_fft: int
    hop_length: int

    @property
    def feature_shape(self) -> tuple[int, int]:
        """(n_mels, frames) of one example's features (centred STFT frames)."""
        return self.n_mels, 1 + self.samples // self.hop_length

    def encode(self, raw: str | Path | Sequence[str | Path] | np.ndarray | Tensor) -> Tensor:
        """Waveforms (N, samples) from WAV paths (read, resampled, fitted) or from waveforms at this rate.

        Raises:
            DataError: unreadable files, or waveforms of another length.
        """
        if isinstance(raw, (str, Path)):
            raw = [raw]
        if isinstance(raw, (list, tuple)) and all(isinstance(item, (str, Path)) for item in raw):
            return torch.from_numpy(np.stack([read_wav(item, self.sample_rate, self.samples) for item in raw]))
        x = torch.as_tensor(np.asarray(raw) if not isinstance(raw, Tensor) else raw, dtype=torch.float32)
        x = x.reshape(1, -1) if x.ndim == 1 else x
        if x.shape[-1] != self.samples:
            raise DataError(f"Waveforms have {x.shape[-1]} samples; this model takes {self.samples} "
                            f"({self.samples / self.sample_rate:g} s at {self.sample_rate} Hz). Give WAV paths (resampled and "
                            "cut for you) or waveforms of that length.")
        return x.reshape(len(x), self.samples)

    def fit(self, x_train: Tensor) -> AudioEncoding:
        """Nothing to fit: the features have no learned statistics (kept for the shared protocol)."""
        return self

    def adapt(self, x: Tensor, source: AudioEncoding) -> Tensor:
        """``x`` unchanged when ``source`` made waveforms of the same rate and length.

        Raises:
            DataError: a different sample rate or duration.
        """
        if (source.sample_rate, source.samples) != (self.sample_rate, self.samples):
            raise DataError(f"This data is {source.samples} samples at {source.sample_rate} Hz; the model takes {self.samples} "
                            f"at {self.sample_rate} Hz. Read it with sample_rate={self.sample_rate} and the same duration.")
        return x

    def describe(self) -> dict[str, Any]:
        """What the model's front-end needs (written to meta.json)."""
        return {"kind": self.kind, "sample_rate": self.sample_rate, "samples": self.samples, "n_mels": self.n_mels,
                "n_fft": self.n_fft, "hop_length": self.hop_length}

    to_json = describe

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> AudioEncoding:
        """Inverse of :meth:`to_json`.

        Raises:
            CheckpointError: a missing key.
        """
        try:
            return cls(*(int(values[key]) for key in ("sample_rate", "samples", "n_mels", "n_fft", "hop_length")))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"The saved audio settings are incomplete ({error!r}); the run folder was edited or is corrupt.") from None
