"""CLIP byte-level BPE: a merges learner for the demo caption grammar, and the tokenizer itself.

The tokenizer follows OpenAI CLIP's simple_tokenizer / HF CLIPTokenizer (lower-case, whitespace collapsed,
the CLIP pre-tokenizer pattern, bytes mapped to printable unicode, "</w>" on the last symbol of a word, merges
applied lowest rank first). The vocabulary is built as CLIP builds it: the 256 byte symbols, the same with
"</w>", one entry per merge (the pair joined), then <|startoftext|> and <|endoftext|>. SD 1.x pads with
<|endoftext|>.
"""
import re

CTX = 77


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


# CLIP's pattern with \p{L} / \p{N} spelled with the re module: letters = [^\W\d_], numbers = \d (one each).
PAT = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+",
                 re.IGNORECASE)


def pretokenize(text):
    text = " ".join(text.split()).strip().lower()
    return PAT.findall(text)


def word_symbols(word):
    b2u = bytes_to_unicode()
    w = "".join(b2u[b] for b in word.encode("utf-8"))
    return tuple(w[:-1]) + (w[-1] + "</w>",)


def learn_merges(word_counts):
    """Greedy BPE on {word: count}: merge the most frequent adjacent pair (ties: smallest pair) until
    every word is one symbol. Returns the list of (a, b) merges in rank order."""
    words = {word_symbols(w): c for w, c in word_counts.items()}
    merges = []
    while True:
        pairs = {}
        for sym, c in words.items():
            for i in range(len(sym) - 1):
                p = (sym[i], sym[i + 1])
                pairs[p] = pairs.get(p, 0) + c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        nw = {}
        for sym, c in words.items():
            out = []
            i = 0
            while i < len(sym):
                if i < len(sym) - 1 and (sym[i], sym[i + 1]) == best:
                    out.append(sym[i] + sym[i + 1])
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + c
        words = nw
    return merges


def merges_text(merges):
    return "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)


class Tokenizer:
    def __init__(self, merges_txt):
        lines = merges_txt.split("\n")
        lines = [ln for ln in lines[1:] if ln.strip()]
        # CLIP keeps at most 49152-256-2 merges (lines 1..48894); ours is far shorter.
        lines = lines[:49152 - 256 - 2]
        self.merges = [tuple(ln.split()) for ln in lines]
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        b2u = bytes_to_unicode()
        vocab = list(b2u.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in self.merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.vocab = vocab
        self.bos = self.encoder["<|startoftext|>"]
        self.eos = self.encoder["<|endoftext|>"]
        self.b2u = b2u
        self.cache = {}

    @property
    def vocab_size(self):
        return len(self.vocab)

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            a, b = best
            out = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        self.cache[token] = word
        return word

    def encode(self, text):
        ids = []
        for tok in pretokenize(text):
            if tok in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.encoder[tok])
                continue
            t = "".join(self.b2u[b] for b in tok.encode("utf-8"))
            ids += [self.encoder[s] for s in self.bpe(t)]
        return ids

    def __call__(self, text):
        """SD 1.x ids: BOS, at most 75 tokens, EOS, EOS padding to 77."""
        ids = [self.bos] + self.encode(text)[:CTX - 2] + [self.eos]
        return ids + [self.eos] * (CTX - len(ids))


def build_merges():
    import random
    import data
    counts = {}
    for s in range(4000):
        _, cap, _ = data.sample_scene(s + 10_000_000, allow_holdout=True)
        for w in pretokenize(cap):
            counts[w] = counts.get(w, 0) + 1
    for w in data.all_words():   # make sure every grammar word is covered
        counts.setdefault(w, 1)
    del random
    return learn_merges(counts)


if __name__ == "__main__":
    m = build_merges()
    txt = merges_text(m)
    tok = Tokenizer(txt)
    print(len(m), "merges, vocab", tok.vocab_size)
    import data
    for w in data.all_words():
        assert len(tok.encode(w)) == 1, w
    print(tok("a large red circle on the left, blue background")[:14])
