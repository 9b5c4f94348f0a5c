"""Audio data: WAV folders (resampled, fitted to one length), the log-mel front-end against librosa, pitch
and speed measured on generated tones, bad input, and `deepwell train` on tones and on espeak-ng speech."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepwell.config import DataSpec
from deepwell.data import prepare_data
from deepwell.data.audio import AudioEncoding, read_wav, read_wav_folder
from deepwell.data.augment import build_augmentation
from deepwell.errors import ConfigError, DataError
from deepwell.models.frontends import LogMel

sf = pytest.importorskip("soundfile")
librosa = pytest.importorskip("librosa")
pytestmark = pytest.mark.usefixtures("single_thread")

RATE = 8000


def tone(frequency: float, seconds: float, rate: int = RATE, start: float = 0.0, total: float | None = None) -> np.ndarray:
    """A sine of ``seconds`` at ``frequency``, starting at ``start`` inside ``total`` seconds of silence."""
    total = seconds if total is None else total
    signal = np.zeros(int(round(total * rate)), dtype=np.float32)
    t = np.arange(int(round(seconds * rate))) / rate
    first = int(round(start * rate))
    signal[first:first + len(t)] = 0.5 * np.sin(2 * np.pi * frequency * t)
    return signal


def dominant_frequency(signal: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.argmax(spectrum) * rate / len(signal))


def sounding_seconds(signal: np.ndarray, rate: int = RATE) -> float:
    """Seconds whose 10 ms RMS is above a tenth of the loudest."""
    frames = signal[: len(signal) // 80 * 80].reshape(-1, 80)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    return float((rms > 0.1 * rms.max()).sum() * 80 / rate)


def audio_inputs(samples: int) -> AudioEncoding:
    return AudioEncoding(RATE, samples, 32, 256, 80)


@pytest.mark.parametrize(("semitones", "expected"), [(12, 880.0), (-12, 220.0), (7, 440.0 * 2 ** (7 / 12))])
def test_pitch_shift_moves_the_dominant_frequency_by_the_semitones(semitones, expected):
    x = torch.from_numpy(tone(440.0, 1.0)).reshape(1, -1)
    pitch = build_augmentation(["pitch:12"], (RATE,), inputs=audio_inputs(RATE)).augmentation
    out = pitch.apply(x, {"semitones": torch.tensor([float(semitones)])})
    assert out.shape == x.shape
    assert dominant_frequency(out[0].numpy()) == pytest.approx(expected, abs=4.0)
    assert sounding_seconds(out[0].numpy()) == pytest.approx(1.0, abs=0.05)  # duration kept


@pytest.mark.parametrize("factor", [2.0, 0.8])
def test_speed_changes_the_duration_by_the_factor_and_keeps_the_pitch(factor):
    x = torch.from_numpy(tone(440.0, 0.4, total=1.0)).reshape(1, -1)  # 0.4 s of tone in 1 s
    speed = build_augmentation(["speed:0.5"], (RATE,), inputs=audio_inputs(RATE)).augmentation
    out = speed.apply(x, {"factor": torch.tensor([factor])})[0].numpy()
    assert len(out) == RATE  # fitted back to the example's length
    assert sounding_seconds(out) == pytest.approx(0.4 / factor, abs=0.03)
    assert dominant_frequency(out) == pytest.approx(440.0, abs=4.0)


@pytest.mark.parametrize("option", ["pitch:3", "speed:0.2"])
def test_audio_apply_is_deterministic_given_params_and_leaves_labels(option):
    x = torch.from_numpy(np.stack([tone(300.0, 0.5), tone(500.0, 0.5)]))
    augment = build_augmentation([option], (x.shape[1],), seed=0, inputs=audio_inputs(x.shape[1]))
    params = augment.augmentation.make_params(2, torch.Generator().manual_seed(1))
    first = augment.augmentation.apply(x, params)
    assert torch.equal(first, augment.augmentation.apply(x.clone(), params)) and not torch.equal(first, x)
    y = torch.tensor([0, 1])
    assert augment(x, y)[1] is y
    with pytest.raises(ConfigError, match="is for audio"):
        build_augmentation([option], (x.shape[1],))


def test_log_mel_front_end_matches_librosa():
    rng = np.random.default_rng(0)
    waveforms = np.stack([tone(440.0, 0.5) + 0.01 * rng.standard_normal(RATE // 2).astype(np.float32),
                          tone(1500.0, 0.25, total=0.5)])
    frontend = LogMel(RATE, 256, 80, 32)
    ours = frontend.power_db(torch.from_numpy(waveforms)).numpy()
    for example, waveform in zip(ours, waveforms):
        mel = librosa.feature.melspectrogram(y=waveform, sr=RATE, n_fft=256, hop_length=80, n_mels=32)
        reference = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
        assert example.shape == reference.shape == (32, 1 + RATE // 2 // 80)
        np.testing.assert_allclose(example, reference, atol=0.02)
    scaled = frontend(torch.from_numpy(waveforms))
    assert scaled.min() >= -1 and scaled.max() == 1  # [-80, 0] dB -> [-1, 1]


def test_wav_files_are_resampled_mixed_to_mono_and_fitted(tmp_path):
    stereo = np.stack([tone(1000.0, 0.3, rate=16000), tone(1000.0, 0.3, rate=16000)], axis=1)
    sf.write(tmp_path / "stereo16k.wav", stereo, 16000)
    waveform = read_wav(tmp_path / "stereo16k.wav", RATE, samples=RATE // 2)
    assert waveform.shape == (RATE // 2,) and waveform.dtype == np.float32
    assert dominant_frequency(waveform[: int(0.3 * RATE)]) == pytest.approx(1000.0, abs=10.0)  # rate mismatch: resampled
    assert np.abs(waveform[int(0.31 * RATE):]).max() == 0  # padded with silence


def write_tone_folder(root: Path, per_class: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for name, base in (("high", 1200.0), ("low", 300.0)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            rate = RATE if i % 3 else 16000  # some files at another rate: resampled on reading
            signal = tone(base * (1 + 0.05 * rng.standard_normal()), 0.4, rate=rate)
            sf.write(root / name / f"{i}.wav", signal + 0.02 * rng.standard_normal(len(signal)), rate)
    return root


@pytest.mark.parametrize(("setup", "message"), [
    (lambda root: None, "not found"),
    (lambda root: root.mkdir(), "has no sub-folders"),
    (lambda root: (root / "yes").mkdir(parents=True), "has no .wav files"),
    (lambda root: ((root / "yes").mkdir(parents=True), (root / "yes" / "a.wav").write_text("not audio")), "Cannot read .* as a WAV"),
])
def test_bad_audio_folders_raise_data_error(tmp_path, setup, message):
    root = tmp_path / "audio"
    setup(root)
    with pytest.raises(DataError, match=message):
        read_wav_folder(root, RATE, 0.5)


def test_non_wav_and_missing_extras_say_what_to_do(tmp_path, monkeypatch):
    (tmp_path / "a.mp3").write_bytes(b"ID3")
    with pytest.raises(DataError, match="not a WAV file"):
        read_wav(tmp_path / "a.mp3", RATE)
    with pytest.raises(DataError, match="6000 samples; this model takes 4000"):
        audio_inputs(4000).encode(np.zeros((2, 6000)))
    sf.write(tmp_path / "a.wav", tone(440.0, 0.1), RATE)
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(ConfigError, match=r"pip install 'deepwell\[audio\]'"):
        read_wav(tmp_path / "a.wav", RATE)
    monkeypatch.setitem(sys.modules, "librosa", None)
    with pytest.raises(ConfigError, match=r"pip install 'deepwell\[audio\]'"):
        LogMel(RATE, 256, 80, 32)


def test_audio_data_refuses_numeric_preprocessing(tmp_path):
    root = write_tone_folder(tmp_path / "tones", per_class=3)
    with pytest.raises(ConfigError, match="waveforms"):
        prepare_data(DataSpec(source=f"wav:path={root},sample_rate={RATE},duration=0.5", preprocess="standardize"), seed=0)


def test_train_wav_folder_of_tones_end_to_end_with_augmentation(train_recording, tmp_path):
    from deepwell.run import Run

    root = write_tone_folder(tmp_path / "tones")
    code, err, seen = train_recording(
        "--set", f"data.source=wav:path={root},sample_rate={RATE},duration=0.5,n_mels=32,n_fft=256",
        "--set", "data.augment=[pitch:1, speed:0.1, amplitude:0.2]", "--set", "train.epochs=8", "--set", "train.batch_size=8",
        "--set", "model.channels=[16, pool, 16]", "--set", f"output.dir={tmp_path / 'runs'}", "--set", "output.name=tones",
        "--set", "output.report=false")
    assert code == 0, err
    run = Run.load(tmp_path / "runs" / "tones")
    assert run.spec.model.arch == "cnn1d" and run.meta["input_shape"] == [RATE // 2]
    assert run.summary["test"]["test/acc"] == 1.0  # 300 Hz vs 1200 Hz: separable
    assert run.predict([root / "low" / "1.wav", root / "high" / "1.wav"]).tolist() == [1, 0]  # classes: high, low
    x_val, batches = seen[0], torch.cat(seen[1:])
    assert len(x_val) > 0 and not any(bool((batches == row).all(dim=1).any()) for row in x_val)  # validation never augmented


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_train_on_espeak_speech_yes_no(cli, tmp_path):
    from deepwell.run import Run

    root = tmp_path / "speech"
    for word in ("yes", "no"):
        (root / word).mkdir(parents=True)
        for voice in ("en", "en-us", "en+f2", "en+m3", "en-gb-scotland"):
            for speed in (130, 175, 220):
                out = root / word / f"{voice.replace('+', '_')}_{speed}.wav"
                subprocess.run(["espeak-ng", "-w", str(out), "-v", voice, "-s", str(speed), word], check=True)
    code, _, err = cli("train", "--set", f"data.source=wav:path={root},sample_rate=16000,duration=0.8,test_fraction=0.3",
                       "--set", "data.augment=[pitch:1, speed:0.1]", "--set", "train.epochs=15", "--set", "train.batch_size=8",
                       "--set", "model.channels=[16, pool, 32]", "--set", "data.val_fraction=0", "--set", f"output.dir={tmp_path / 'runs'}",
                       "--set", "output.name=speech", "--set", "output.report=false", "--progress", "none")
    assert code == 0, err
    run = Run.load(tmp_path / "runs" / "speech")
    assert run.summary["test"]["test/acc"] >= 0.8  # 9 held-out recordings of unseen voice/speed pairs
