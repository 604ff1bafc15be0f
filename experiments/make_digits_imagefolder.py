"""Write scikit-learn's digits as two small ImageFolders, for the offline fine-tuning example.

    python experiments/make_digits_imagefolder.py images

makes images/pretrain/<0..5>/*.png and images/finetune/<6..9>/*.png: each 8x8 digit scaled
to 32x32 RGB. README, "Fine-tuning pretrained weights", runs the example on them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

SPLITS = {"pretrain": range(0, 6), "finetune": range(6, 10)}


def main(root: Path) -> None:
    digits = load_digits()
    for split, classes in SPLITS.items():
        for digit in classes:
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(digits.images[digits.target == digit]):
                pixels = (image / 16 * 255).astype(np.uint8)
                picture = Image.fromarray(pixels).resize((32, 32), Image.BILINEAR)
                picture.convert("RGB").save(folder / f"{i:03d}.png")
    print(f"wrote {root / 'pretrain'} (digits 0-5) and {root / 'finetune'} (digits 6-9)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python experiments/make_digits_imagefolder.py FOLDER")
    main(Path(sys.argv[1]))
