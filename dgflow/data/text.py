"""Character-level text corpora cut into fixed-length strings, for the text GAN (docs/design.md §3.3, §7).

    corpus = load_corpus("/usr/share/games/fortunes")     # or a list of files, or Billion Words
    corpus.train, corpus.heldout                           # LongTensors (N, 32) of character indices
    x = one_hot(corpus.train[:64], len(corpus.vocab))      # (64, 32, V) float, what the critic reads
    decode(generator(z), corpus.vocab)                     # generated (N, 32, V) -> list of strings

**Layout.** A batch of sequences is ``(N, L, V)``: sample, position, character (one-hot rows for
real text, softmax rows for generated text). Integer index tensors are ``(N, L)``.

**Vocabulary** (:data:`DEFAULT_VOCAB`, 49 symbols): space, ``a``-``z``, ``0``-``9``, the eleven
punctuation marks ``. , ; : ! ? ' " - ( )`` and the placeholder ``_`` (:data:`UNKNOWN`), last.

**Normalisation** of each document (in this order, by :func:`normalize`):

1. overstrikes (``c``, backspace) are removed, keeping the character typed over (``_\\bA`` -> ``A``);
2. lowercased (``lowercase=True``, the default: uppercase letters are 6% of the fortunes' letters
   and would double the letters of the vocabulary);
3. every run of whitespace (spaces, tabs, newlines) becomes one space; ends are stripped;
4. other control characters (bell, ...) are dropped;
5. every remaining character outside the vocabulary (``_`` itself, ``*``, ``#``, ``/``, digits
   of a user vocabulary without them, non-ASCII, ...) becomes the placeholder ``unknown``
   (``"_"``), or is dropped with ``unknown=None``.

**Documents.** In a file with at least one line that is exactly ``%`` (the fortune format) a
document is the text between such lines; in any other file (e.g. Billion Words: one sentence a
line) every non-empty line is a document (``documents="auto"``; force one with ``"fortune"`` or
``"line"``). Empty documents are dropped, exact duplicates (after normalisation) kept once.

**Split** (deterministic, disjoint by document): a document is held out when
``crc32(normalised text) mod 10000 < heldout_fraction * 10000``, so the split depends on the text
alone, not on file order or on the other documents. Within each split the documents are joined
by single spaces, in file order (files sorted by path), and the stream is cut into consecutive,
non-overlapping ``seq_len``-character strings; the incomplete tail is dropped.

**Files.** ``paths`` is a file, a directory (every regular file below it, recursively, sorted) or
a list of them. Binary files (a NUL byte in their first 8 KiB, e.g. the fortunes' ``.dat``
indexes) are skipped, and so is a second path to a file already read (the fortunes' ``.u8``
symlinks). Files are read as UTF-8, undecodable bytes becoming the placeholder.
"""
from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
import torch

#: The placeholder that characters outside the vocabulary become (the last symbol of the vocabulary).
UNKNOWN = "_"
#: 49 symbols: space, a-z, 0-9, 11 punctuation marks, the placeholder.
DEFAULT_VOCAB = " abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()" + UNKNOWN
#: Where Debian's ``fortunes`` package puts its plain-text fortune files.
FORTUNES_DIR = "/usr/share/games/fortunes"
SEQ_LEN = 32
HELDOUT_FRACTION = 0.3
_HASH_BINS = 10_000

PathsLike = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

_OVERSTRIKE = re.compile(r"[^\x08]\x08")
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_vocab(vocab: str, unknown: str | None = UNKNOWN) -> str:
    """``vocab`` if it is a string of at least 2 distinct characters containing ``unknown``."""
    if not isinstance(vocab, str) or len(vocab) < 2:
        raise ValueError(f"vocab must be a string of at least 2 characters, got {vocab!r}")
    if len(set(vocab)) != len(vocab):
        dup = sorted({c for c in vocab if vocab.count(c) > 1})
        raise ValueError(f"vocab: characters listed twice: {dup!r}")
    if unknown is not None and (not isinstance(unknown, str) or len(unknown) != 1 or unknown not in vocab):
        raise ValueError(f"unknown must be one character of vocab (or None to drop other characters), "
                         f"got {unknown!r}")
    return vocab


def normalize(text: str, vocab: str = DEFAULT_VOCAB, unknown: str | None = UNKNOWN,
              lowercase: bool = True) -> str:
    """One document normalised as described in the module docstring (steps 1-5)."""
    while _OVERSTRIKE.search(text):
        text = _OVERSTRIKE.sub("", text)
    text = text.replace("\x08", "")  # a backspace with nothing before it
    if lowercase:
        text = text.lower()
    text = _SPACES.sub(" ", text).strip()
    text = _CONTROL.sub("", text)
    allowed = set(vocab)
    if unknown is None:
        return "".join(c for c in text if c in allowed)
    return "".join(c if c in allowed else unknown for c in text)


def encode(strings: Iterable[str], vocab: str = DEFAULT_VOCAB) -> torch.Tensor:
    """Strings of equal length (already normalised: every character in ``vocab``) -> (N, L) int64."""
    strings = list(strings)
    index = {c: i for i, c in enumerate(vocab)}
    if not strings:
        return torch.zeros(0, 0, dtype=torch.long)
    lengths = {len(s) for s in strings}
    if len(lengths) != 1:
        raise ValueError(f"strings: expected strings of one length, got lengths {sorted(lengths)[:5]}")
    try:
        rows = [[index[c] for c in s] for s in strings]
    except KeyError as err:
        raise ValueError(f"strings: character {err.args[0]!r} is not in the vocabulary {vocab!r}; "
                         "normalise the text first (dgflow.data.text.normalize)") from None
    return torch.tensor(rows, dtype=torch.long)


def one_hot(indices: torch.Tensor, vocab_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, L) character indices -> (N, L, V) one-hot rows (the layout the text critic reads)."""
    return torch.nn.functional.one_hot(indices.long(), vocab_size).to(dtype)


def decode(x, vocab: str) -> list[str]:
    """Sequences -> strings, by the most likely character at each position (argmax).

    ``x``: a torch tensor or numpy array, either ``(N, L, V)`` scores (softmax rows of a text
    generator, one-hot rows, or logits; ``V = len(vocab)``, last axis) or ``(N, L)`` integer
    character indices. Returns ``N`` strings of length ``L``.
    """
    if not isinstance(vocab, str) or not vocab:
        raise ValueError(f"vocab must be a non-empty string (one character per index), got {vocab!r}")
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x.detach().cpu()
    if t.dim() == 3:
        if t.shape[-1] != len(vocab):
            hint = (" (it looks like (N, V, L): transpose it to (N, L, V))"
                    if t.shape[1] == len(vocab) else "")
            raise ValueError(f"x: expected (N, L, V) with V = len(vocab) = {len(vocab)} on the last axis, "
                             f"got shape {tuple(t.shape)}{hint}")
        idx = t.float().argmax(dim=-1)
    elif t.dim() == 2 and not t.is_floating_point() and not t.is_complex():
        idx = t.long()
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(vocab)):
            raise ValueError(f"x: character indices must lie in [0, {len(vocab)}), got "
                             f"[{int(idx.min())}, {int(idx.max())}]")
    else:
        raise ValueError(f"x: expected (N, L, V) scores or (N, L) integer indices, got shape "
                         f"{tuple(t.shape)} of dtype {t.dtype}")
    table = np.array(list(vocab))
    return ["".join(row) for row in table[idx.numpy()]]


def vocab_of_entry(entry: dict) -> str | None:
    """The vocabulary of a zoo entry of a text model (``generator.kwargs.vocab``), else ``None``.

    For ``dgflow refine``: ``decode(x, vocab_of_entry(entry))`` turns the generated ``x`` into strings.
    """
    if entry.get("kind", "text") != "text":
        return None
    vocab = ((entry.get("generator") or {}).get("kwargs") or {}).get("vocab")
    return vocab if isinstance(vocab, str) else None


# ------------------------------------------------------------------------------------ corpus
@dataclass
class TextCorpus:
    """Train and held-out strings as ``(N, seq_len)`` int64 indices into ``vocab``."""

    train: torch.Tensor
    heldout: torch.Tensor
    vocab: str
    seq_len: int
    files: tuple[Path, ...] = field(default=())
    n_documents: tuple[int, int] = (0, 0)  # (train, held-out)
    settings: dict = field(default_factory=dict)

    def strings(self, split: str = "train") -> list[str]:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        return decode(self.train if split == "train" else self.heldout, self.vocab)

    def one_hot(self, split: str = "train", index: torch.Tensor | slice | None = None) -> torch.Tensor:
        data = self.train if split == "train" else self.heldout
        return one_hot(data if index is None else data[index], len(self.vocab))


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as fh:
        return b"\x00" in fh.read(8192)


def corpus_files(paths: PathsLike) -> list[Path]:
    """The text files that ``paths`` names (see the module docstring), in order; raises naming
    ``paths`` if one does not exist or none is a text file."""
    if isinstance(paths, (str, os.PathLike)):
        given = [paths]
    else:
        given = list(paths)
    if not given:
        raise ValueError("paths: no file or directory given")
    files: list[Path] = []
    seen: set[Path] = set()
    for p in given:
        path = Path(os.path.expanduser(os.fspath(p)))
        if not path.exists():
            raise FileNotFoundError(f"paths: {path} does not exist (give a text file, a directory of "
                                    "them, or a list of either)")
        below = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
        for q in below:
            real = q.resolve()
            if real in seen or _is_binary(real):
                continue
            seen.add(real)
            files.append(q)
    if not files:
        raise ValueError(f"paths: no text files found in {[os.fspath(p) for p in given]}")
    return files


def split_documents(text: str, documents: str = "auto") -> list[str]:
    """Raw documents of one file's ``text``: fortune-format (``%`` lines) or one per line."""
    if documents not in ("auto", "fortune", "line"):
        raise ValueError(f"documents must be 'auto', 'fortune' or 'line', got {documents!r}")
    lines = text.splitlines()
    fortune = documents == "fortune" or (documents == "auto" and any(ln.rstrip() == "%" for ln in lines))
    if not fortune:
        return [ln for ln in lines if ln.strip()]
    docs, cur = [], []
    for ln in lines:
        if ln.rstrip() == "%":
            docs.append("\n".join(cur))
            cur = []
        else:
            cur.append(ln)
    docs.append("\n".join(cur))
    return docs


def is_heldout(doc: str, heldout_fraction: float) -> bool:
    """The split rule: ``crc32(doc) mod 10000 < heldout_fraction * 10000``."""
    return zlib.crc32(doc.encode("utf-8")) % _HASH_BINS < round(heldout_fraction * _HASH_BINS)


def cut(docs: Sequence[str], seq_len: int) -> list[str]:
    """Join ``docs`` by single spaces and cut into consecutive ``seq_len``-character strings."""
    stream = " ".join(docs)
    return [stream[i:i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]


def load_corpus(paths: PathsLike = FORTUNES_DIR, *, seq_len: int = SEQ_LEN, vocab: str = DEFAULT_VOCAB,
                unknown: str | None = UNKNOWN, lowercase: bool = True,
                heldout_fraction: float = HELDOUT_FRACTION, documents: str = "auto",
                encoding: str = "utf-8") -> TextCorpus:
    """Read, normalise, split and cut a text corpus (see the module docstring for every rule).

    ``paths``: a text file, a directory, or a list of them (default: the fortunes package's
    directory). Raises ``FileNotFoundError``/``ValueError`` naming the argument at fault: a
    missing path, no text file, a corpus too small to give one string to each split.
    """
    check_vocab(vocab, unknown)
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    if not 0.0 < float(heldout_fraction) < 1.0:
        raise ValueError(f"heldout_fraction must lie strictly between 0 and 1, got {heldout_fraction!r}")
    if documents not in ("auto", "fortune", "line"):
        raise ValueError(f"documents must be 'auto', 'fortune' or 'line', got {documents!r}")
    try:
        files = corpus_files(paths)
    except FileNotFoundError:
        if isinstance(paths, (str, os.PathLike)) and os.fspath(paths) == FORTUNES_DIR:
            raise FileNotFoundError(f"paths: {FORTUNES_DIR} does not exist; install the corpus with "
                                    "`apt-get install fortunes` or pass your own text files") from None
        raise
    seen: set[str] = set()
    parts: tuple[list[str], list[str]] = ([], [])
    for path in files:
        text = path.read_text(encoding=encoding, errors="replace")
        for raw in split_documents(text, documents):
            doc = normalize(raw, vocab, unknown, lowercase)
            if not doc or doc in seen:
                continue
            seen.add(doc)
            parts[is_heldout(doc, heldout_fraction)].append(doc)
    if not seen:
        raise ValueError(f"paths: the corpus {[os.fspath(f) for f in files][:5]} holds no text "
                         "(every file is empty or whitespace)")
    train, held = cut(parts[0], seq_len), cut(parts[1], seq_len)
    for name, got, docs in (("train", train, parts[0]), ("held-out", held, parts[1])):
        if not got:
            raise ValueError(f"paths: the corpus is too small: its {name} split ({len(docs)} documents, "
                             f"heldout_fraction={heldout_fraction}) gives no {seq_len}-character string")
    settings = {"seq_len": seq_len, "vocab": vocab, "unknown": unknown, "lowercase": lowercase,
                "heldout_fraction": heldout_fraction, "documents": documents}
    return TextCorpus(train=encode(train, vocab), heldout=encode(held, vocab), vocab=vocab, seq_len=seq_len,
                      files=tuple(files), n_documents=(len(parts[0]), len(parts[1])), settings=settings)
