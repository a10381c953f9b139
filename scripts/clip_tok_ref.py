#!/usr/bin/env python3
"""Pure-Python re-implementation of transformers 4.33's slow CLIPTokenizer without ftfy, used to derive
the expected ids of the Unicode prompts in tests/test_tokenizer.c (transformers and the `regex` module are
not installed here). It follows tokenization_clip.py: BasicTokenizer(strip_accents=False,
do_split_on_punc=False) -> CLIP pattern with Unicode classes (unicodedata.category) -> bytes_to_unicode
-> BPE by merge rank; special tokens (<|startoftext|>, <|endoftext|>, and "!" for the SD 2.x pad token)
split the text first, as PreTrainedTokenizer.tokenize does.
Checked against ../shared/golden/tokenizer/cases.json by --check.
Usage: clip_tok_ref.py VOCAB_DIR [--sd2] TEXT...   |   clip_tok_ref.py VOCAB_DIR --check CASES.json
"""
import json
import sys
import unicodedata as ud


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def is_cjk(cp):
    return any(a <= cp <= b for a, b in [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                                        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)])


def basic(text):
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        cat = ud.category(ch)
        if ch in " \t\n\r" or cat == "Zs":
            out.append(" ")
        elif cat.startswith("C"):
            continue
        elif is_cjk(cp):
            out.append(" " + ch + " ")
        else:
            out.append(ch)
    text = ud.normalize("NFC", "".join(out))
    return " ".join(w.lower() for w in text.split())


def cls(ch):
    c = ud.category(ch)
    return "L" if c[0] == "L" else "N" if c[0] == "N" else "S" if ch.isspace() else "O"


def pretok(text):
    i, out = 0, []
    while i < len(text):
        if cls(text[i]) == "S":
            i += 1
            continue
        m = 0
        for lit in ("<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"):
            if text.startswith(lit, i):
                m = len(lit)
                break
        if not m:
            c = cls(text[i])
            m = 1
            if c == "L":
                while i + m < len(text) and cls(text[i + m]) == "L":
                    m += 1
            elif c == "O":
                while i + m < len(text) and cls(text[i + m]) == "O":
                    m += 1
        out.append(text[i:i + m])
        i += m
    return out


class Tok:
    def __init__(self, d):
        self.enc = json.load(open(d + "/vocab.json", encoding="utf-8"))
        merges = open(d + "/merges.txt", encoding="utf-8").read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.be = bytes_to_unicode()

    def bpe(self, token):
        if token in ("<|startoftext|>", "<|endoftext|>"):
            return [token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(self.ranks.get((a, b), 1e18), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            r, _ = min(pairs)
            if r == 1e18:
                break
            first, second = min(pairs)[1], None
            first, second = word[first], word[first + 1]
            new, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = new
        return word

    def segment(self, text):
        ids = []
        for p in pretok(basic(text)):
            tok = "".join(self.be[b] for b in p.encode("utf-8"))
            ids += [self.enc.get(t, self.enc["<|endoftext|>"]) for t in self.bpe(tok)]
        return ids

    def encode(self, text, sd2=False):
        specials = ["<|startoftext|>", "<|endoftext|>"] + (["!"] if sd2 else [])
        ids, seg, i = [], 0, 0
        while i <= len(text):
            hit = next((s for s in specials if text.startswith(s, i)), None) if i < len(text) else None
            if hit or i == len(text):
                ids += self.segment(text[seg:i])
                if hit:
                    ids.append(self.enc[hit])
                    i += len(hit)
                    seg = i
                else:
                    break
            else:
                i += 1
        return ids


def main():
    t = Tok(sys.argv[1])
    if sys.argv[2] == "--check":
        bad = 0
        for c in json.load(open(sys.argv[3]))["cases"]:
            for key, sd2 in (("sd1_unpadded", False), ("sd2_unpadded", True)):
                got = [49406] + t.encode(c["prompt"], sd2) + [49407]
                if got != c[key]:
                    bad += 1
                    print("MISMATCH", key, repr(c["prompt"]))
        print("mismatches:", bad)
        return
    sd2 = sys.argv[2] == "--sd2"
    for text in sys.argv[3 if sd2 else 2:]:
        print(json.dumps(text, ensure_ascii=True), t.encode(text, sd2))


main()
