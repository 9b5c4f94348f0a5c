"""Text as token ids: a tokeniser, and a vocabulary fitted on the training split only.

The model sees each text as ``max_length`` token ids (float32, exact below 2**24), left-aligned and
padded with id 0 (``<pad>``); a word outside the vocabulary becomes id 1 (``<unk>``). The vocabulary
is fitted like preprocessing is, on the final training split only, in two steps:

1. the source (``csv_text``) tokenises every split and numbers all the distinct words it saw, in
   sorted order. That is a lookup table, not a statistic: it counts nothing.
2. :func:`deepwell.data.prepare_data`, after the validation split, calls :meth:`TextEncoding.fit`
   on the training ids: words seen at least ``min_count`` times there, the ``max_size`` most
   frequent, make the vocabulary; :meth:`TextEncoding.adapt` renumbers every split with it, so a
   word seen only in validation or test data is ``<unk>`` to the model.

The fitted vocabulary is saved in the run's ``model.safetensors`` (its metadata, as JSON, next to the
fitted preprocessing), so ``Run.load(path).predict(["a new review"])`` tokenises new text the same way.

Example::

    raw = TextEncoding.from_texts(["a good film", "a bad film"], max_length=8)
    ids = raw.encode(["a good film"])          # (1, 8)
    fitted = raw.fit(ids)                       # vocabulary of the training ids only
    fitted.adapt(ids, raw)                      # the same texts in the fitted numbering
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor

from deepwell.errors import CheckpointError, DataError

__all__ = ["PAD", "UNK", "PAD_ID", "UNK_ID", "TextEncoding", "tokenize"]

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
# Lower-case words: runs of letters or digits, with inner apostrophes kept ("don't", "o'clock").
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of ``text``; punctuation and spaces separate words.

    Example::

        tokenize("Don't panic, it's 42!")  # ["don't", 'panic', "it's", '42']
    """
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class TextEncoding:
    """A vocabulary (id -> word) and the fixed sequence length; turns texts into padded token ids.

    Args:
        tokens: the words by id; ids 0 and 1 are always ``<pad>`` and ``<unk>``.
        max_length: ids per text; longer texts are cut (their first words kept), shorter ones padded.
        min_count: :meth:`fit` keeps words seen at least this often in the training split.
        max_size: :meth:`fit` keeps at most this many words (the most frequent; ties by word), or None.
        fitted: whether this vocabulary came from :meth:`fit` (else it numbers every word of the source).
    """

    kind: ClassVar[str] = "tokens"
    tokens: tuple[str, ...]
    max_length: int
    min_count: int = 1
    max_size: int | None = None
    fitted: bool = False

    def __post_init__(self) -> None:
        if tuple(self.tokens[:2]) != (PAD, UNK):
            raise DataError(f"A vocabulary must start with {PAD!r}, {UNK!r}; it starts with {list(self.tokens[:2])}.")

    @classmethod
    def from_texts(cls, texts: Iterable[str], max_length: int, min_count: int = 1, max_size: int | None = None) -> TextEncoding:
        """Number every distinct word of ``texts`` (sorted): the unfitted table a source builds."""
        words = sorted({word for text in texts for word in tokenize(text)} - {PAD, UNK})
        return cls((PAD, UNK, *words), max_length, min_count, max_size)

    @cached_property
    def index(self) -> dict[str, int]:
        """word -> id."""
        return {word: i for i, word in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: str | Sequence[str]) -> Tensor:
        """Token ids (N, max_length), float32, for raw texts; unknown words become ``<unk>``.

        Raises:
            DataError: a text without a single word (empty, or only punctuation).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = torch.full((len(texts), self.max_length), float(PAD_ID))
        for row, text in enumerate(texts):
            words = tokenize(str(text))
            if not words:
                raise DataError(f"Text #{row} ({str(text)[:40]!r}) has no words; every text needs at least one word "
                                "(letters or digits). Remove empty rows or fill them in.")
            ids[row, :min(len(words), self.max_length)] = torch.tensor(
                [self.index.get(word, UNK_ID) for word in words[: self.max_length]], dtype=torch.float32)
        return ids

    def decode(self, ids: Tensor) -> list[str]:
        """Texts of token ids (N, L): words joined by spaces, padding left out."""
        return [" ".join(self.tokens[int(i)] for i in row if int(i) != PAD_ID) for row in ids.reshape(len(ids), -1)]

    def fit(self, x_train: Tensor) -> TextEncoding:
        """The vocabulary of the training ids ``x_train`` (N, L): ``min_count`` and ``max_size`` applied.

        Raises:
            DataError: no word is frequent enough (the vocabulary would hold only <pad> and <unk>).
        """
        counts = torch.bincount(x_train.reshape(-1).long(), minlength=len(self.tokens))
        counts[PAD_ID] = counts[UNK_ID] = 0
        kept = [i for i in range(2, len(self.tokens)) if int(counts[i]) >= self.min_count]
        kept.sort(key=lambda i: (-int(counts[i]), self.tokens[i]))  # most frequent first, then by word
        kept = kept[: self.max_size] if self.max_size is not None else kept
        if not kept:
            raise DataError(f"No word occurs {self.min_count} or more times in the training texts; lower min_count.")
        words = sorted(self.tokens[i] for i in kept)
        return TextEncoding((PAD, UNK, *words), self.max_length, self.min_count, self.max_size, fitted=True)

    def adapt(self, x: Tensor, source: TextEncoding) -> Tensor:
        """Renumber ids ``x`` written with the vocabulary ``source`` into this vocabulary."""
        if source.max_length != self.max_length:
            raise DataError(f"Texts were encoded with max_length={source.max_length}; this vocabulary uses {self.max_length}. "
                            "Encode them with the same max_length.")
        table = torch.tensor([self.index.get(word, UNK_ID) for word in source.tokens], dtype=x.dtype)
        table[PAD_ID] = PAD_ID
        return table[x.long()]

    def describe(self) -> dict[str, Any]:
        """What the model's front-end needs (written to meta.json)."""
        return {"kind": self.kind, "vocabulary_size": len(self.tokens), "padding_id": PAD_ID, "unknown_id": UNK_ID,
                "max_length": self.max_length}

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild this encoding: :meth:`describe` plus the words and fit options."""
        return {**self.describe(), "tokens": list(self.tokens), "min_count": self.min_count, "max_size": self.max_size,
                "fitted": self.fitted}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TextEncoding:
        """Inverse of :meth:`to_json`.

        Raises:
            CheckpointError: a missing key.
        """
        try:
            return cls(tuple(values["tokens"]), int(values["max_length"]), int(values["min_count"]),
                       values["max_size"], bool(values["fitted"]))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"The saved vocabulary is incomplete ({error!r}); the run folder was edited or is corrupt.") from None
