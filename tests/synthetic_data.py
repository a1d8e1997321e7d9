#!/usr/bin/env python3
"""A small synthetic data dir for the CLI tests (no network; stdlib only).

Usage: synthetic_data.py DIR
Writes DIR/austen/{train,valid,test}.txt (random sentences over 24 common words) and
DIR/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (4 classes: which image
quarter is bright; 5600 training and 300 test images).
"""
import gzip
import os
import random
import struct
import sys

root = sys.argv[1]
os.makedirs(f"{root}/austen", exist_ok=True)
os.makedirs(f"{root}/fashion-mnist", exist_ok=True)
random.seed(1)
words = "the of and to a in that it was her she he you not be his as with had for but my at".split()


def text(n):
    return "\n".join(" ".join(random.choice(words) for _ in range(12)) + "." for _ in range(n)) + "\n"


for name, n in (("train", 3000), ("valid", 200), ("test", 200)):
    open(f"{root}/austen/{name}.txt", "w").write(text(n))

random.seed(2)


def write(prefix, n):
    imgs, labs = bytearray(), bytearray()
    for _ in range(n):
        c = random.randrange(4)
        img = [random.randrange(60) for _ in range(784)]
        for r in range(14):
            for q in range(14):
                img[(r + 14 * (c // 2)) * 28 + q + 14 * (c % 2)] += 150
        imgs += bytes(img)
        labs.append(c)
    gzip.open(f"{root}/fashion-mnist/{prefix}-images-idx3-ubyte.gz", "wb").write(struct.pack(">iiii", 0x803, n, 28, 28) + imgs)
    gzip.open(f"{root}/fashion-mnist/{prefix}-labels-idx1-ubyte.gz", "wb").write(struct.pack(">ii", 0x801, n) + labs)


write("train", 5600)
write("t10k", 300)
