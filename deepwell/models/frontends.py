"""Front-ends: the first layer of a network whose inputs are not plain numbers.

- Token ids (B, L) -> :class:`TokenEmbedding`: the mean of the words' embeddings (B, E) for
  ``arch=embedding_bag`` (a bag of embeddings, as ``nn.EmbeddingBag(mode="mean")``; Joulin et al.
  2017, fastText), or the sequence of embeddings (B, E, L) for ``arch=cnn1d`` (Kim 2014).
- Waveforms (B, S) -> :class:`LogMel`: log-mel features (B, n_mels, frames), a 1-D signal whose
  channels are the mel bands (``arch=cnn1d``), or an image (``cnn2d``), or flattened (``mlp``).

The front-end is described by the data's ``encoding.describe()`` (a plain mapping saved in
meta.json), so this module needs nothing from :mod:`deepwell.data`.

Example::

    frontend, shape = build_frontend({"kind": "tokens", "vocabulary_size": 500, "padding_id": 0,
                                      "max_length": 32}, "embedding_bag", embedding_dim=64)
    shape  # (64,)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from deepwell.errors import ConfigError, missing_extra

__all__ = ["LogMel", "TokenEmbedding", "build_frontend", "frontend_arch"]

# Decibels below each example's loudest mel bin that are kept (librosa's power_to_db top_db).
TOP_DB = 80.0


class TokenEmbedding(nn.Module):
    """Token ids (B, L), float or int, padded with ``padding_id`` -> (B, E) mean embeddings or (B, E, L).

    Args:
        vocabulary_size: number of ids.
        dim: embedding size E.
        padding_id: the id of ``<pad>``; its embedding is zero and it does not count in the mean.
        pooled: mean over the text's words (bag of embeddings) instead of the sequence.
        generator: RNG for the N(0, 1) initial embeddings (the ``nn.Embedding`` default distribution).
    """

    def __init__(self, vocabulary_size: int, dim: int, padding_id: int, pooled: bool,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.padding_id, self.pooled = padding_id, pooled
        self.embedding = nn.EmbeddingBag(vocabulary_size, dim, mode="mean", padding_idx=padding_id) if pooled else \
            nn.Embedding(vocabulary_size, dim, padding_idx=padding_id)
        with torch.no_grad():
            nn.init.normal_(self.embedding.weight, 0.0, 1.0, generator=generator)
            self.embedding.weight[padding_id] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.long()  # (B, L)
        if self.pooled:
            return self.embedding(ids)  # (B, E): the mean over non-padding ids (zero for an all-padding row)
        return self.embedding(ids).transpose(1, 2)  # (B, L, E) -> (B, E, L): embedding dims are the channels


class LogMel(nn.Module):
    """Waveforms (B, S) or (B, 1, S) -> log-mel features (B, n_mels, 1 + S // hop_length), in [-1, 1].

    The power spectrogram is ``torch.stft`` with a periodic Hann window, centred frames and zero
    padding, mapped by librosa's (Slaney) mel filter bank: the same numbers as
    ``librosa.feature.melspectrogram`` (tested). Decibels are taken relative to each example's loudest
    bin and floored at -80 dB (``librosa.power_to_db(S, ref=np.max, top_db=80)``), then scaled
    from [-80, 0] to [-1, 1]: loudness does not matter, and the features arrive near unit scale.
    The filter bank is a buffer, saved with the weights.

    Args:
        sample_rate: Hz of the waveforms.
        n_fft: STFT window in samples.
        hop_length: samples between frames.
        n_mels: mel bands.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> None:
        super().__init__()
        try:
            import librosa
        except ImportError:
            raise missing_extra("librosa", "audio", "log-mel audio features") from None
        self.n_fft, self.hop_length = n_fft, hop_length
        filters = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)  # (n_mels, n_fft // 2 + 1)
        self.register_buffer("mel_filters", torch.from_numpy(filters).float())
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def power_db(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S) -> mel power in dB relative to each example's maximum, floored at -TOP_DB: (B, n_mels, frames)."""
        spectrum = torch.stft(x.reshape(len(x), -1).float(), self.n_fft, self.hop_length, window=self.window,
                              center=True, pad_mode="constant", return_complex=True).abs().square()  # (B, F, T)
        mel = torch.einsum("mf,bft->bmt", self.mel_filters, spectrum)
        decibels = 10.0 * torch.log10(mel.clamp_min(1e-10))
        decibels = decibels - decibels.amax(dim=(1, 2), keepdim=True)
        return decibels.clamp_min(-TOP_DB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + 2.0 * self.power_db(x) / TOP_DB  # [-80, 0] dB -> [-1, 1]


def frontend_arch(arch: str, inputs: Mapping[str, Any] | None) -> str:
    """``auto`` for encoded inputs: embedding_bag for token ids, cnn1d for audio; checks the pairing.

    Raises:
        ConfigError: an architecture that cannot read these inputs.
    """
    kind = inputs.get("kind") if inputs else None
    if kind is None:
        if arch == "embedding_bag":
            raise ConfigError("model.arch=embedding_bag reads token ids; this data is numbers. Use a text source "
                              "(csv_text:path=...,text=COLUMN) or arch=auto / mlp / cnn1d / cnn2d.")
        return arch
    if kind == "tokens":
        if arch == "auto":
            return "embedding_bag"
        if arch not in ("embedding_bag", "cnn1d"):
            raise ConfigError(f"model.arch={arch} cannot read token ids (word numbers are not amounts). "
                              "Use embedding_bag (mean of word embeddings) or cnn1d (convolutions over word embeddings).")
        return arch
    if kind == "audio":
        if arch == "embedding_bag":
            raise ConfigError("model.arch=embedding_bag reads token ids; this data is audio. Use auto, cnn1d, cnn2d or mlp.")
        return "cnn1d" if arch == "auto" else arch
    raise ConfigError(f"Unknown input kind {kind!r}; expected 'tokens' or 'audio'.")


def build_frontend(inputs: Mapping[str, Any] | None, arch: str, embedding_dim: int,
                   generator: torch.Generator | None = None) -> tuple[nn.Module | None, tuple[int, ...] | None]:
    """The front-end for encoded inputs and the shape of one example after it; (None, None) for numbers.

    Args:
        inputs: the data encoding's ``describe()`` (``kind`` = ``tokens`` or ``audio``), or None.
        arch: the resolved architecture (``embedding_bag`` pools the embeddings, others keep the sequence).
        embedding_dim: embedding size for token ids.
        generator: RNG for the embeddings.
    """
    if not inputs:
        return None, None
    if inputs["kind"] == "tokens":
        pooled = arch == "embedding_bag"
        module = TokenEmbedding(int(inputs["vocabulary_size"]), embedding_dim, int(inputs["padding_id"]), pooled, generator)
        return module, ((embedding_dim,) if pooled else (embedding_dim, int(inputs["max_length"])))
    frames = 1 + int(inputs["samples"]) // int(inputs["hop_length"])
    module = LogMel(int(inputs["sample_rate"]), int(inputs["n_fft"]), int(inputs["hop_length"]), int(inputs["n_mels"]))
    return module, (int(inputs["n_mels"]), frames)
