#!/usr/bin/env python3
"""Deterministic tokenizer test corpus: NUL-separated records of raw bytes.

    python3 tests/tokenizer_corpus.py OUT [--records N] [--seed S]

Mixes English-like prose, source code, numbers, whitespace runs, CJK, emoji (ZWJ sequences, skin
tones, flags), combining marks (decomposed Latin for NFC, Devanagari, Thai), RTL (Arabic, Hebrew,
bidi controls), control characters, added/special tokens of the three test tokenizers, a few very
long pieces (the BPE priority-queue path), and records that are not valid UTF-8 (lone continuation
bytes, truncated sequences, overlongs, surrogates, > U+10FFFF). No record contains a NUL byte.

Characters are drawn from blocks assigned long ago, so that PCRE2 10.42 (Unicode 14), ICU 72
(Unicode 15) and Node's ICU (Unicode 15.1+) agree on their categories. Excluded on purpose, see
docs/tokenizers.md: U+0085 and U+FEFF (JavaScript's \\s disagrees with Unicode White_Space, which
the Rust tokenizers and mfqat follow) and U+017F (PCRE2's and Oniguruma's case-insensitive 's'
match it, the oracle's rewritten [sS] does not).
"""
import argparse
import random

WORDS = """the of and to a in is it you that he was for on are with as I his they be at one have this
from or had by hot word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her long
make thing see him two has look more day could go come did number sound no most people my over know
water than call first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under name very through
just form sentence great think say help low line differ turn cause much mean before move right boy
old too same tell does set three want air well also play small end put home read hand port large
spell add even land here must big high such follow act why ask men change went light kind off need
house picture try us again animal point mother world near build self earth father head stand own
page should country found answer school grow study still learn plant cover food sun four between
state keep eye never last let thought city tree cross farm hard start might story saw far sea draw
left late run don't while press close night real life few north open seem together next white
children begin got walk example ease paper group always music those both mark often letter until
mile river car feet care second book carry took science eat room friend began idea fish mountain
stop once base hear horse cut sure watch color face wood main enough plain girl usual young ready
above ever red list though feel talk bird soon body dog family direct pose leave song measure door
product black short numeral class wind question happen complete ship area half rock order fire
south problem piece told knew pass since top whole king space heard best hour better true during
hundred five remember step early hold west ground interest reach fast verb sing listen six table
travel less morning ten simple several vowel toward war lay against pattern slow center love person
money serve appear road map rain rule govern pull cold notice voice unit power town fine certain fly
fall lead cry dark machine note wait plan figure star box noun field rest correct able pound done
beauty drive stood contain front teach week final gave green oh quick develop ocean warm free minute
strong special mind behind clear tail produce fact street inch multiply nothing course stay wheel
full force blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate miss brought heat snow
tire bring yes distant fill east paint language among Elizabeth Darcy Bennet Pemberley Netherfield
tokenizer quantization MXFP4 llama Qwen Mistral naïve café résumé coöperate façade jalapeño""".split()

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "'M", "'x", "'"]
PUNCT = [".", ",", ";", ":", "!", "?", "...", " -", " --", "—", "–", "(", ")", "\"", "'", "“", "”", "‘", "’", "«", "»",
         "[", "]", "{", "}", "/", "\\", "&", "@", "#", "%", "*", "+", "=", "<", ">", "|", "~", "^", "`", "$", "€", "£",
         "¥", "©", "®", "™", "°", "§", "¶", "•", "…"]

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|reserved_special_token_7|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
            "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|vision_pad|>", "<s>", "</s>", "<unk>",
            "<|im_sta", "<|begin_of", "<<s>>", "<s", "s>", "</s", "<|", "|>", "<0x0A>", "<0xFF>"]

CODE = [
    "def {w}(x, y=None):\n    return x + {n}\n",
    "for (int i = 0; i < {n}; ++i) {{\n\tsum += a[i] * b[i];\n}}\n",
    "const {w} = async () => {{ await fetch('/api/{w}?id={n}'); }};\n",
    "#include <vector>\nstd::vector<int> {w}({n}, -1);  // {w}\n",
    "if ({w} != NULL && {w}->next) {{\r\n    free({w});\r\n}}\r\n",
    "SELECT {w}, COUNT(*) FROM t WHERE id >= {n} GROUP BY {w};\n",
    "    # TODO({w}): handle   {n} cases\n\n\n    pass\n",
    "x = [{n}, {n}, {n}]  # {w}\n\tprint(f\"{{x!r}}\")\n",
    "<div class=\"{w}\">{n}&nbsp;&amp;</div>\n",
    "    \t  \n{w}:\n  - {n}\n  - \"{w}\"\n",
    "fn {w}(&mut self) -> Result<(), Box<dyn Error>> {{ Ok(()) }}\n",
    "$ ls -la /usr/{w} | grep -E '^d' && echo ${n}\n",
]

# (lo, hi) inclusive, assigned since Unicode 1.1 - 6.0.
SAFE_RANGES = [
    (0x21, 0x7E), (0xA1, 0xAC), (0xAE, 0x17E), (0x180, 0x24F), (0x250, 0x2AF), (0x391, 0x3A1), (0x3A3, 0x3A9),
    (0x3B1, 0x3C9), (0x400, 0x45F), (0x531, 0x556), (0x561, 0x586), (0x10D0, 0x10FA), (0x1E00, 0x1EF9),
    (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2500, 0x257F), (0x25A0, 0x25FF), (0x2600, 0x2613), (0x3041, 0x3094),
    (0x30A1, 0x30FA), (0x4E00, 0x9FA5), (0xAC00, 0xD7A3), (0xFF01, 0xFF5E), (0xE000, 0xE0FF), (0x10330, 0x1034A),
    (0x1D400, 0x1D433), (0x1F600, 0x1F64F), (0x1F300, 0x1F3F0),
]
CJK = [(0x4E00, 0x9FA5)]
HIRAGANA = [(0x3041, 0x3094)]
KATAKANA = [(0x30A1, 0x30FA)]
HANGUL = [(0xAC00, 0xD7A3)]
CJK_PUNCT = ["。", "、", "「", "」", "『", "』", "（", "）", "！", "？", "：", "；", "〜", "・", "　"]
ARABIC = [(0x0621, 0x063A), (0x0641, 0x064A)]
ARABIC_MARKS = [(0x064B, 0x0652)]
ARABIC_DIGITS = [(0x0660, 0x0669)]
HEBREW = [(0x05D0, 0x05EA)]
HEBREW_MARKS = [(0x05B0, 0x05B9), (0x05BB, 0x05BD)]
DEVANAGARI = [(0x0905, 0x0939)]
DEVANAGARI_MARKS = [(0x093E, 0x094D)]
THAI = [(0x0E01, 0x0E2E)]
THAI_MARKS = [(0x0E31, 0x0E31), (0x0E34, 0x0E3A), (0x0E47, 0x0E4E)]
COMBINING = [(0x0300, 0x036F)]
EMOJI = [(0x1F600, 0x1F64F), (0x1F300, 0x1F5FF), (0x1F680, 0x1F6C5), (0x2600, 0x2613)]
SKIN = [(0x1F3FB, 0x1F3FF)]
WS = [" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\u00a0", "\u2003", "\u2009", "\u3000",
      "\u2028", "\u2029", "\u1680", "\u180e", "\u200b", "\u000b", "\u000c", "\t\t", "    "]
CONTROLS = [chr(c) for c in list(range(1, 9)) + [0x0E, 0x0F, 0x1B, 0x1F, 0x7F, 0x80, 0x9F, 0xAD, 0x200C, 0x200D, 0x2060]]
BIDI = ["\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]
OTHER_DIGITS = [(0x0660, 0x0669), (0x06F0, 0x06F9), (0x0966, 0x096F), (0xFF10, 0xFF19), (0x2160, 0x216B), (0x00B2, 0x00B3),
                (0x00BC, 0x00BE), (0x2460, 0x2473)]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def char(self, ranges):
        lo, hi = self.pick(ranges)
        return chr(self.r.randint(lo, hi))

    def chars(self, ranges, lo, hi):
        return "".join(self.char(ranges) for _ in range(self.r.randint(lo, hi)))

    def number(self):
        r = self.r
        k = r.randrange(10)
        if k == 0:
            return str(r.randrange(10))
        if k == 1:
            return str(r.randrange(10 ** r.randint(2, 25)))
        if k == 2:
            return f"{r.uniform(-1e6, 1e6):.{r.randint(0, 6)}f}"
        if k == 3:
            return f"{r.randrange(1, 10**9):,}"
        if k == 4:
            return f"{r.randint(1900, 2099)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        if k == 5:
            return hex(r.randrange(1 << 64))
        if k == 6:
            return f"+1 ({r.randint(100, 999)}) {r.randint(100, 999)}-{r.randint(1000, 9999)}"
        if k == 7:
            return f"{r.random():.3e}"
        if k == 8:
            return self.chars(OTHER_DIGITS, 1, 8)
        return "".join(str(r.randrange(10)) for _ in range(r.randint(4, 40)))

    def word(self):
        w = self.pick(WORDS)
        k = self.r.randrange(12)
        if k == 0:
            w = w.capitalize()
        elif k == 1:
            w = w.upper()
        elif k == 2:
            w += self.pick(CONTRACTIONS)
        return w

    def prose(self):
        out = []
        for _ in range(self.r.randint(1, 6)):
            words = [self.word() for _ in range(self.r.randint(3, 25))]
            words[0] = words[0].capitalize()
            s = ""
            for i, w in enumerate(words):
                s += ("" if i == 0 else " ") + w
                if self.r.random() < 0.12:
                    s += self.pick(PUNCT)
                if self.r.random() < 0.05:
                    s += " " + self.number()
            out.append(s + self.pick([".", ".", "!", "?", "...", ";", ""]))
        return self.pick([" ", " ", "  ", "\n", "\n\n"]).join(out)

    def code(self):
        return "".join(self.pick(CODE).format(w=self.pick(WORDS).replace("'", ""), n=self.number())
                       for _ in range(self.r.randint(1, 4)))

    def whitespace(self):
        parts = []
        for _ in range(self.r.randint(1, 12)):
            parts.append(self.pick(WS) * self.r.randint(1, 4))
            if self.r.random() < 0.6:
                parts.append(self.word())
        return "".join(parts)

    def cjk(self):
        parts = []
        for _ in range(self.r.randint(1, 8)):
            k = self.r.randrange(6)
            if k == 0:
                parts.append(self.chars(CJK, 1, 12))
            elif k == 1:
                parts.append(self.chars(HIRAGANA, 1, 8) + self.chars(KATAKANA, 0, 5))
            elif k == 2:
                parts.append(self.chars(HANGUL, 1, 6) + " " + self.chars(HANGUL, 1, 4))
            elif k == 3:
                parts.append(self.pick(CJK_PUNCT))
            elif k == 4:
                parts.append(self.word())
            else:
                parts.append(self.number())
        return "".join(parts)

    def emoji(self):
        parts = []
        for _ in range(self.r.randint(1, 8)):
            k = self.r.randrange(7)
            if k == 0:
                parts.append(self.char(EMOJI))
            elif k == 1:
                parts.append(self.char(EMOJI) + self.char(SKIN))
            elif k == 2:
                parts.append("\u200d".join(self.char(EMOJI) for _ in range(self.r.randint(2, 4))))
            elif k == 3:
                parts.append(chr(self.r.randint(0x1F1E6, 0x1F1FF)) + chr(self.r.randint(0x1F1E6, 0x1F1FF)))
            elif k == 4:
                parts.append(self.pick("0123456789#*") + "\ufe0f\u20e3")
            elif k == 5:
                parts.append(self.char(EMOJI) + "\ufe0f")
            else:
                parts.append(" " + self.word() + self.pick(["", " ", "!"]))
        return "".join(parts)

    def combining(self):
        parts = []
        for _ in range(self.r.randint(1, 8)):
            k = self.r.randrange(5)
            if k == 0:  # decomposed Latin: NFC composes these (Qwen)
                parts.append("".join(self.pick("aeiouAEIOUncyzs") + self.chars(COMBINING, 1, 2) for _ in range(self.r.randint(1, 5))))
            elif k == 1:
                parts.append(self.chars(DEVANAGARI, 1, 1) + self.chars(DEVANAGARI_MARKS, 0, 2) + self.chars(DEVANAGARI, 1, 3))
            elif k == 2:
                parts.append(self.chars(THAI, 1, 3) + self.chars(THAI_MARKS, 1, 2) + self.chars(THAI, 0, 3))
            elif k == 3:
                parts.append(self.pick(WORDS) + self.chars(COMBINING, 1, 4))  # stacked marks
            else:
                parts.append(" ")
        return "".join(parts)

    def rtl(self):
        parts = []
        for _ in range(self.r.randint(1, 8)):
            k = self.r.randrange(6)
            if k == 0:
                parts.append("".join(self.char(ARABIC) + (self.char(ARABIC_MARKS) if self.r.random() < 0.3 else "")
                                     for _ in range(self.r.randint(2, 8))))
            elif k == 1:
                parts.append("".join(self.char(HEBREW) + (self.char(HEBREW_MARKS) if self.r.random() < 0.3 else "")
                                     for _ in range(self.r.randint(2, 7))))
            elif k == 2:
                parts.append(self.pick(BIDI))
            elif k == 3:
                parts.append(self.chars(ARABIC_DIGITS, 1, 4))
            elif k == 4:
                parts.append(self.word())
            else:
                parts.append(self.pick([" ", " ", "، ", "؟", "."]))
        return "".join(parts)

    def mixed(self):
        parts = []
        for _ in range(self.r.randint(1, 10)):
            k = self.r.randrange(6)
            if k == 0:
                parts.append(self.chars(SAFE_RANGES, 1, 10))
            elif k == 1:
                parts.append(self.pick(CONTROLS))
            elif k == 2:
                parts.append(self.pick(WS))
            elif k == 3:
                parts.append(self.word())
            elif k == 4:
                parts.append(self.pick(PUNCT) * self.r.randint(1, 3))
            else:
                parts.append(self.pick(["\uffff", "\ufffd", "\U0010fffd", "\U000e0041", "\ufdd0"]))
        return "".join(parts)

    def specials(self):
        parts = []
        for _ in range(self.r.randint(2, 8)):
            k = self.r.randrange(4)
            if k == 0:
                parts.append(self.pick(SPECIALS))
            elif k == 1:
                parts.append(self.pick(SPECIALS) + self.pick(["\n", " ", "", "  "]))
            elif k == 2:
                parts.append(self.prose()[: self.r.randint(1, 60)])
            else:
                parts.append(self.pick(["user\n", "assistant\n", "system\n", " "]))
        return "".join(parts)

    def long(self):
        k = self.r.randrange(6)
        n = self.r.randint(300, 6000)
        if k == 0:
            return "".join(self.pick("abcdefghijklmnopqrstuvwxyz") for _ in range(n))  # one huge word
        if k == 1:
            return "".join(str(self.r.randrange(10)) for _ in range(n))
        if k == 2:
            return self.pick([" ", "\n", "\t", " \n"]) * n
        if k == 3:
            return self.chars(CJK, n // 4, n // 4)
        if k == 4:
            return "ab" * (n // 2) + " " + "=" * (n // 3)
        return " ".join(self.prose() for _ in range(8))

    def invalid(self):
        # Bytes: valid text with ill-formed sequences spliced in.
        bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
               b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xfe", b"\xff", b"\xe4\xb8", b"\xf0\x9f\x98", b"\xf0\x9f", b"\xc3",
               b"\xe2\x82", b"\xc3\x28", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xa0\xa1", b"\xf8\x88\x80\x80\x80"]
        out = b""
        for _ in range(self.r.randint(1, 6)):
            k = self.r.randrange(3)
            if k == 0:
                out += self.pick(bad)
            elif k == 1:
                out += self.pick([self.prose, self.cjk, self.emoji, self.whitespace])()[:40].encode()
            else:
                out += bytes(self.r.randint(1, 255) for _ in range(self.r.randint(1, 6)))
        # A record may still end in a truncated character: cut mid-sequence sometimes.
        if self.r.random() < 0.2:
            s = "é中🙂".encode()
            out += s[: self.r.randint(1, len(s) - 1)]
        for cp in FORBIDDEN:  # random bytes may spell one of the excluded characters
            out = out.replace(cp.encode(), b"?")
        return out


FORBIDDEN = ("\u0085", "\ufeff", "\u017f")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--records", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--kind", help="only this kind of record (prose, code, cjk, ...), e.g. for a speed figure")
    a = ap.parse_args()
    g = Gen(a.seed)
    kinds = [g.prose, g.prose, g.code, g.number, g.whitespace, g.cjk, g.emoji, g.combining, g.rtl, g.mixed, g.specials,
             g.invalid]
    if a.kind:
        kinds = [getattr(g, a.kind)]
    records = []
    for i in range(a.records):
        if i % 400 == 399 and not a.kind:
            rec = g.long()
        else:
            rec = kinds[i % len(kinds)]()
        b = rec if isinstance(rec, bytes) else rec.encode("utf-8", "surrogatepass")
        assert b"\x00" not in b
        assert not any(x.encode() in b for x in FORBIDDEN)
        records.append(b)
    with open(a.out, "wb") as f:
        f.write(b"\x00".join(records))
    print(f"{len(records)} records, {sum(map(len, records))} bytes -> {a.out}")


if __name__ == "__main__":
    main()
