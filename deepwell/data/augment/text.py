"""Text augmentations on token ids (B, L): synonym replacement, random deletion, random swaps (EDA, Wei & Zou 2019).

Design: augmentation works on the token ids the model sees, through the run's fitted vocabulary,
not on raw strings before tokenising. The training loop hands ``batch_transform`` one batch of the
training tensors, so ids are what is there; doing it on ids keeps text like every other kind of data
(tensors on the device, a batch is an index slice) and makes each step a gather over the batch
instead of Python string work per word per batch. What it costs: a synonym can only be chosen when it
is in the vocabulary. That loses nothing the model could use, since a synonym outside the vocabulary
would reach the model as ``<unk>``, which teaches it nothing about the word.

As for images, random draws (``make_params``) are separate from the deterministic ``apply``:

- ``synonym:p`` replaces each word, with probability ``p``, by one of its synonyms in the vocabulary
  (uniformly), words without one stay. Synonyms come from WordNet, read with nltk's
  ``WordNetCorpusReader`` from Debian's ``wordnet-base`` database (``/usr/share/wordnet``; files nltk
  wants but Debian does not ship, such as ``lexnames``, are supplied in memory), or from a file given
  as ``synonym:0.2,synonyms=PATH`` with lines ``word<TAB>syn1,syn2``.
- ``delete:p`` drops each word with probability ``p`` (a text keeps at least its first word); the
  rest move left and the end is padded.
- ``swap:n`` swaps two random words of the text, n times.

Example::

    augment = build_augmentation(["synonym:0.2", "delete:0.1"], (64,), seed=0, inputs=splits.encoding)
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from deepwell.data.augment.base import Augmentation, Fraction, Params, register_for
from deepwell.data.text import PAD_ID, TextEncoding
from deepwell.errors import ConfigError, DataError, missing_extra

__all__ = ["DeleteWords", "SwapWords", "SynonymReplace", "load_wordnet", "read_synonym_file", "synonym_table", "wordnet_synonyms"]

WORDNET_ROOT = "/usr/share/wordnet"
# The 45 lexicographer files of WordNet 3.0 in their fixed order (WordNet's lexnames(5WN)); the Debian
# package leaves the file `lexnames` out, and nltk's reader needs it only to name a synset's file.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object noun.person "
    "noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption "
    "verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative "
    "verb.weather adj.ppl"
).split()
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


@functools.lru_cache(maxsize=4)
def load_wordnet(root: str = WORDNET_ROOT) -> Any:
    """nltk's WordNet reader over a WordNet database folder (Debian: ``apt-get install wordnet-base``).

    The reader is cached per folder (reading the indexes takes a second or two).

    Raises:
        ConfigError: nltk missing (names the extra), or no WordNet database in ``root``.
    """
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        raise missing_extra("nltk", "text", "synonym replacement") from None
    folder = Path(root)
    if not (folder / "index.noun").is_file() or not (folder / "data.noun").is_file():
        raise ConfigError(f"No WordNet database in '{folder}' (index.noun, data.noun, ...). Install Debian's with "
                          "`apt-get install wordnet-base`, or give your own synonyms: synonym:0.2,synonyms=PATH "
                          "(lines word<TAB>syn1,syn2).")
    resolved = str(folder.resolve())
    if resolved not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(resolved)  # nltk reads corpora only below its data path

    class _DebianWordNet(WordNetCorpusReader):
        """nltk's reader, with the files Debian's package lacks supplied in memory."""

        def open(self, file: str):  # noqa: A003 - nltk's method name
            if file == "lexnames" and not (folder / file).is_file():
                lines = [f"{i:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES)]
                return io.StringIO("".join(lines))
            return super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:
            # Maps synsets of nltk's own WordNet download onto this one, for multilingual data (OMW),
            # which is not used here; without the download it would fail.
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": as intended
        return _DebianWordNet(resolved, None)


def wordnet_synonyms(word: str, wordnet: Any) -> list[str]:
    """Single-word lemmas of every WordNet synset of ``word`` (lower case, the word itself left out), in WordNet's order."""
    names = (lemma.name().lower() for synset in wordnet.synsets(word) for lemma in synset.lemmas())
    return list(dict.fromkeys(name for name in names if "_" not in name and "-" not in name and name != word))


def read_synonym_file(path: str | Path) -> dict[str, list[str]]:
    """Read synonyms from a UTF-8 text file of lines ``word<TAB>syn1,syn2`` (blank lines and ``#`` comments skipped).

    Raises:
        DataError: missing file, or a line without a tab.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Synonym file '{path}' not found. Give a text file with lines word<TAB>syn1,syn2.")
    synonyms: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, tab, rest = line.partition("\t")
        if not tab:
            raise DataError(f"Line {number} of synonym file '{path}' has no tab: {line[:60]!r}. Write word<TAB>syn1,syn2.")
        synonyms.setdefault(word.strip().lower(), []).extend(s.strip().lower() for s in rest.split(",") if s.strip())
    return synonyms


def synonym_table(encoding: TextEncoding, synonyms: Mapping[str, Iterable[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Synonym ids per word id, restricted to the vocabulary: (V, K) int64 padded with -1, and counts (V,)."""
    rows = [[encoding.index[s] for s in dict.fromkeys(synonyms.get(word, ())) if s in encoding.index and s != word]
            for word in encoding.tokens]
    rows[PAD_ID], rows[1] = [], []  # <pad>, <unk>: never replaced
    width = max((len(row) for row in rows), default=0)
    table = torch.full((len(rows), max(width, 1)), -1, dtype=torch.int64)
    for i, row in enumerate(rows):
        table[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
    return table, torch.tensor([len(row) for row in rows], dtype=torch.int64)


def _check_tokens(name: str, inputs: Any) -> TextEncoding:
    if not isinstance(inputs, TextEncoding):
        raise ConfigError(f"Augmentation '{name}' needs token ids and their vocabulary (a text source such as csv_text).")
    return inputs


class SynonymReplace(Augmentation):
    """Replace each word with probability ``p`` by a uniformly chosen synonym from ``table``.

    ``params``: ``replace`` bool (B, L), ``pick`` float in [0, 1) (B, L) choosing among the synonyms.
    """

    def __init__(self, p: float, table: torch.Tensor, counts: torch.Tensor, length: int) -> None:
        self.p, self.table, self.counts, self.length = p, table, counts, length

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"replace": (torch.rand(batch_size, self.length, generator=generator) < self.p).to(device),
                "pick": torch.rand(batch_size, self.length, generator=generator).to(device)}

    def apply(self, x, params):
        ids = x.long()  # (B, L)
        table, counts = self.table.to(ids.device), self.counts.to(ids.device)
        available = counts[ids]  # (B, L)
        choice = (params["pick"].to(ids.device) * available).long().clamp_max((available - 1).clamp_min(0))
        synonym = table[ids, choice]  # (B, L); -1 where the word has none
        replace = params["replace"].to(ids.device) & (available > 0)
        return torch.where(replace, synonym, ids).to(x.dtype)


class DeleteWords(Augmentation):
    """Drop each word with probability ``p``; survivors keep their order, moved left, padding after them.

    ``params``: ``drop`` bool (B, L). A text that would lose every word keeps its first one.
    """

    def __init__(self, p: float, length: int) -> None:
        self.p, self.length = p, length

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"drop": (torch.rand(batch_size, self.length, generator=generator) < self.p).to(device)}

    def apply(self, x, params):
        ids = x.long()  # (B, L)
        keep = (ids != PAD_ID) & ~params["drop"].to(ids.device)
        keep[:, 0] |= ~keep.any(dim=1)  # never an empty text
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept positions first, in order
        moved = ids.gather(1, order)
        positions = torch.arange(ids.shape[1], device=ids.device)
        return torch.where(positions < keep.sum(dim=1, keepdim=True), moved, PAD_ID).to(x.dtype)


class SwapWords(Augmentation):
    """Swap two random words of each text, ``n`` times in a row.

    ``params``: ``pairs`` float in [0, 1) (B, n, 2): each pair of positions, as fractions of the text's length.
    """

    def __init__(self, n: int) -> None:
        self.n = n

    def make_params(self, batch_size, generator, device="cpu") -> Params:
        return {"pairs": torch.rand(batch_size, self.n, 2, generator=generator).to(device)}

    def apply(self, x, params):
        ids = x.long().clone()  # (B, L)
        lengths = (ids != PAD_ID).sum(dim=1, keepdim=True)  # words are left-aligned: positions 0..length-1
        positions = (params["pairs"].to(ids.device) * lengths.unsqueeze(2)).long()  # (B, n, 2)
        for step in range(positions.shape[1]):
            i, j = positions[:, step, :1], positions[:, step, 1:]  # (B, 1) each
            first, second = ids.gather(1, i), ids.gather(1, j)
            ids.scatter_(1, i, second)
            ids.scatter_(1, j, first)
        return ids.to(x.dtype)


# --- registry entries: the signature is the schema; input_shape and inputs are context -------------


@register_for("tokens", "synonym")
def _synonym(p: Fraction = 0.1, synonyms: str | None = None, wordnet: str = WORDNET_ROOT,
             *, input_shape: Sequence[int], inputs: Any) -> Augmentation:
    """Replace words with probability p by a synonym in the vocabulary (WordNet, or synonyms=PATH: word<TAB>syn1,syn2)."""
    encoding = _check_tokens("synonym", inputs)
    if synonyms is not None:
        table = read_synonym_file(synonyms)
    else:
        reader = load_wordnet(wordnet)
        table = {word: wordnet_synonyms(word, reader) for word in encoding.tokens[2:]}
    return SynonymReplace(p, *synonym_table(encoding, table), encoding.max_length)


@register_for("tokens", "delete")
def _delete(p: Fraction = 0.1, *, input_shape: Sequence[int], inputs: Any) -> Augmentation:
    """Drop each word with probability p (a text keeps at least one word)."""
    return DeleteWords(p, _check_tokens("delete", inputs).max_length)


@register_for("tokens", "swap")
def _swap(n: Annotated[int, Field(ge=1, le=100)] = 1, *, input_shape: Sequence[int], inputs: Any) -> Augmentation:
    """Swap two random words, n times."""
    _check_tokens("swap", inputs)
    return SwapWords(n)
