"""The text pipeline: corpus loader, JS-n metric, character-level WGAN-GP nets, decoding, zoo entry."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from dgflow.data.text import (DEFAULT_VOCAB, FORTUNES_DIR, UNKNOWN, decode, encode, is_heldout,
                              load_corpus, normalize, one_hot, vocab_of_entry)
from dgflow.metrics.text import NgramReference, js_divergence, js_ngram, js_scores, ngram_counts
from dgflow.models.arch.text import CharCritic, CharGenerator

ZOO_NAME = "text-fortunes-wgangp"
V = len(DEFAULT_VOCAB)


def write_fortunes(path: Path, docs: list[str]) -> Path:
    path.write_text("\n%\n".join(docs) + "\n%\n", encoding="utf-8")
    return path


def numbered_docs(k: int, start: int = 0) -> list[str]:
    # every document names its number several times, so each 32-character string shows its source
    return [f"document {i:03d} " * 4 for i in range(start, start + k)]


def numbers_in(strings: list[str]) -> set[str]:
    return {w for s in strings for w in s.split() if len(w) == 3 and w.isdigit()}


# ------------------------------------------------------------------------------------ corpus
def test_normalize_vocab_rules():
    assert len(DEFAULT_VOCAB) == 49 and DEFAULT_VOCAB[-1] == UNKNOWN
    # overstrike keeps the character typed over; case folded; whitespace runs -> one space;
    # control characters dropped; characters outside the vocabulary -> the placeholder
    assert normalize("_\bH_\bi  there,\n\tYOU*\x07\u00e9!") == "hi there, you__!"
    assert normalize("ab\b\bc") == "c"
    assert normalize("A*b", unknown=None) == "ab"
    assert normalize("A*b", lowercase=False) == "__b"  # uppercase is outside the default vocabulary
    assert normalize("xyz", vocab="xy?", unknown="?") == "xy?"
    with pytest.raises(ValueError, match="unknown"):
        load_corpus(FORTUNES_DIR, vocab="ab", unknown="?")  # checked before any file is read
    with pytest.raises(ValueError, match="vocab"):
        load_corpus(FORTUNES_DIR, vocab="aab")


def test_load_corpus_from_directory_and_from_files(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    a = write_fortunes(d / "a", numbered_docs(40))
    b = write_fortunes(d / "b", numbered_docs(40, start=40))
    (d / "a.dat").write_bytes(b"\x00\x00\x00\x02binary index")  # skipped: binary
    os.symlink(a, d / "a.u8")  # skipped: a second path to a file already read
    from_dir = load_corpus(d)
    assert [f.name for f in from_dir.files] == ["a", "b"]
    from_list = load_corpus([a, b])
    assert torch.equal(from_dir.train, from_list.train) and torch.equal(from_dir.heldout, from_list.heldout)
    # each split: its documents ("document NNN" four times: 51 characters) joined by spaces,
    # cut into 32-character strings, the tail dropped
    k_train, k_held = from_dir.n_documents
    assert k_train + k_held == 80 and k_train > 0 and k_held > 0
    assert len(from_dir.train) == (52 * k_train - 1) // 32 and len(from_dir.heldout) == (52 * k_held - 1) // 32
    assert from_dir.train.shape[1] == 32 and from_dir.train.dtype == torch.long
    assert all(len(s) == 32 for s in from_dir.strings("heldout"))


def test_line_documents_and_duplicates(tmp_path):
    f = tmp_path / "sentences.txt"  # no '%' line: one document per line (Billion Words layout)
    f.write_text("\n".join(["The same sentence again."] * 5 + numbered_docs(30)) + "\n")
    c = load_corpus(f, seq_len=8)
    assert sum(c.n_documents) == 31  # the five duplicates count once


def test_split_is_disjoint_deterministic_and_order_free(tmp_path):
    a = write_fortunes(tmp_path / "a", numbered_docs(60))
    b = write_fortunes(tmp_path / "b", numbered_docs(60, start=60))
    c1, c2 = load_corpus([a, b]), load_corpus([b, a])
    held, train = numbers_in(c1.strings("heldout")), numbers_in(c1.strings("train"))
    assert held and train and not held & train  # no document on both sides
    expected = {f"{i:03d}" for i in range(120) if is_heldout(normalize(numbered_docs(1, i)[0]), 0.3)}
    assert held == expected
    assert numbers_in(c2.strings("heldout")) == held  # the rule depends on the text, not on file order
    assert 0.1 < len(held) / 120 < 0.5
    bigger = load_corpus([a, b], heldout_fraction=0.6)
    assert numbers_in(bigger.strings("heldout")) > held  # a larger fraction only adds documents


def test_missing_and_empty_corpus_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="paths"):
        load_corpus(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="paths"):
        load_corpus([write_fortunes(tmp_path / "ok", numbered_docs(5)), tmp_path / "nope"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="paths: no text files"):
        load_corpus(empty)
    with pytest.raises(ValueError, match="paths"):
        load_corpus([])
    (empty / "blank.txt").write_text("  \n%\n\n")
    with pytest.raises(ValueError, match="paths: .*no text"):
        load_corpus(empty)
    tiny = write_fortunes(tmp_path / "tiny", ["only a few words"])
    with pytest.raises(ValueError, match="too small"):
        load_corpus(tiny)
    with pytest.raises(ValueError, match="heldout_fraction"):
        load_corpus(tiny, heldout_fraction=1.0)


@pytest.mark.skipif(not Path(FORTUNES_DIR).is_dir(), reason="apt-get install fortunes")
def test_fortunes_corpus():
    c = load_corpus()
    assert len(c.heldout) >= 20_000 and len(c.train) > 2 * len(c.heldout)
    assert not set(c.strings("heldout")[:2000]) & set(c.strings("train"))


# ------------------------------------------------------------------------------------ metric
def test_js_identical_and_disjoint():
    s = ["the cat sat on the mat", "a dog"]
    assert js_ngram(s, s, 4) == 0.0
    assert js_ngram(s, list(reversed(s)) * 3, 2) == pytest.approx(0.0, abs=1e-12)  # proportions only
    assert js_ngram(["aaaaaa"], ["bbbbbb"], 4) == pytest.approx(1.0)
    assert js_ngram(["abcdef"], ["ghijkl"], 6) == pytest.approx(1.0)


def test_js_by_hand():
    # n = 2: "abc" -> {ab: 1/2, bc: 1/2}; "abd" -> {ab: 1/2, bd: 1/2}; m = {ab: 1/2, bc: 1/4, bd: 1/4}
    # KL(p||m) = 1/2 ln(1) + 1/2 ln((1/2)/(1/4)) = ln(2)/2, KL(q||m) the same,
    # JS = (ln2/2 + ln2/2) / 2 / ln 2 = 0.5 bits
    assert js_ngram(["abc"], ["abd"], 2) == pytest.approx(0.5)
    # n = 1: "aaab" -> {a: 3/4, b: 1/4}; "ab" -> {a: 1/2, b: 1/2}; m = {a: 5/8, b: 3/8}
    # KL(p||m) = 3/4 ln(6/5) + 1/4 ln(2/3) = 0.136741 - 0.101366 = 0.035375 nats
    # KL(q||m) = 1/2 ln(4/5) + 1/2 ln(4/3) = -0.111572 + 0.143841 = 0.032269 nats
    # JS = (0.035375 + 0.032269) / 2 / 0.693147 = 0.048795 bits
    assert js_ngram(["aaab"], ["ab"], 1) == pytest.approx(0.048795, abs=2e-6)
    kl = lambda p, m: sum(a * math.log(a / b) for a, b in zip(p, m))  # noqa: E731
    assert js_divergence({"a": 3, "b": 1}, {"a": 1, "b": 1}) == pytest.approx(
        0.5 * (kl([0.75, 0.25], [0.625, 0.375]) + kl([0.5, 0.5], [0.625, 0.375])) / math.log(2))


def test_ngrams_stay_inside_strings():
    assert ngram_counts(["ab", "cd"], 2) == {"ab": 1, "cd": 1}  # no "bc"
    assert ngram_counts(["abc"], 4) == {}
    with pytest.raises(ValueError, match="p: no n-grams"):
        js_ngram(["abc"], ["abcdef"], 4)
    with pytest.raises(ValueError, match="n must"):
        ngram_counts(["abc"], 0)
    ref = NgramReference(["the cat sat", "on the mat!"])
    out = ref(["the cat ran", "on the hat!"])
    assert set(out) == {"js4", "js6"} and 0 < out["js4"] < out["js6"] <= 1
    assert out == js_scores(["the cat ran", "on the hat!"], ["the cat sat", "on the mat!"])


# ------------------------------------------------------------------------------------ models
@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return (CharGenerator(DEFAULT_VOCAB, z_dim=16, seq_len=32, width=8, blocks=1),
            CharCritic(DEFAULT_VOCAB, seq_len=32, width=8, blocks=1))


def test_model_shapes(nets):
    g, d = nets
    x = g(torch.randn(5, 16))
    assert x.shape == (5, 32, len(DEFAULT_VOCAB))
    assert bool((x >= 0).all()) and torch.allclose(x.sum(-1), torch.ones(5, 32))
    assert d(x).shape == (5,)
    assert d(one_hot(torch.randint(0, V, (3, 32)), V)).shape == (3,)
    with pytest.raises(ValueError, match=r"\(N, 32, 49\)"):
        d(x.transpose(1, 2))


def test_gradient_reaches_z(nets):
    g, d = nets
    z = torch.randn(4, 16, requires_grad=True)
    d(g(z)).sum().backward()
    assert z.grad is not None and bool((z.grad.norm(dim=1) > 0).all())


def test_decode_round_trip(nets):
    strings = ["hello, world! (fortunes) 123;:?'", 'a "quoted" - string with _ in it']
    assert {len(s) for s in strings} == {32}
    idx = encode(strings)
    assert decode(one_hot(idx, V), DEFAULT_VOCAB) == strings
    assert decode(idx, DEFAULT_VOCAB) == strings
    assert decode(one_hot(idx, V).numpy(), DEFAULT_VOCAB) == strings
    soft = torch.softmax(one_hot(idx, V) * 5 + 0.1 * torch.randn(2, 32, V), -1)
    assert decode(soft, DEFAULT_VOCAB) == strings
    g, _ = nets
    out = decode(g(torch.randn(3, 16)), DEFAULT_VOCAB)
    assert len(out) == 3 and all(len(s) == 32 and set(s) <= set(DEFAULT_VOCAB) for s in out)
    with pytest.raises(ValueError, match=r"transpose it to \(N, L, V\)"):
        decode(one_hot(idx, V).transpose(1, 2), DEFAULT_VOCAB)
    with pytest.raises(ValueError, match="indices"):
        decode(torch.full((1, 4), V), DEFAULT_VOCAB)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode(["ABC"])


# ------------------------------------------------------------------------------------ zoo
def test_zoo_entry_loads_and_refines():
    import dgflow.zoo

    m = dgflow.zoo.load(ZOO_NAME)
    vocab = vocab_of_entry(m.entry)
    assert vocab == DEFAULT_VOCAB == m.generator.module.vocab
    assert vocab_of_entry({"generator": {"kwargs": {}}}) is None
    z = m.generator.sample_prior(16, generator=torch.Generator().manual_seed(0))
    # this WGAN-GP critic's logits vary little (std ~0.07): stop=None, since refine's default rule would
    # read them as a critic at chance and leave z unchanged
    zr = dgflow.refine(m.generator, m.critic, z, steps=2, generator_rng=0, stop=None)
    assert zr.shape == z.shape and bool(torch.isfinite(zr).all()) and not torch.equal(zr, z)
    x = dgflow.generate(m.generator, zr)
    assert x.shape == (16, 32, V)
    strings = decode(x, vocab)
    assert len(strings) == 16 and all(len(s) == 32 for s in strings)
    # a trained model writes mostly letters and spaces, not uniform noise over 50 symbols
    letters = sum(c.isalpha() or c == " " for s in strings for c in s) / (16 * 32)
    assert letters > 0.7
