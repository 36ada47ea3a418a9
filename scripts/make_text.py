"""Generate the text data set: short sentences about four topics (sport, weather, food, computers).

    python scripts/make_text.py               # data/generated/sentences.csv: 2,000 rows

Columns: `text` (a sentence built from a topic's words and words shared by all topics, so that a
model must find the words that matter), `topic`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

TOPICS = {
    "sport": ["team", "goal", "match", "coach", "league", "score", "player", "season", "referee", "stadium", "win", "race"],
    "weather": ["rain", "storm", "sunny", "cloud", "wind", "forecast", "snow", "cold", "warm", "fog", "thunder", "humid"],
    "food": ["bread", "soup", "recipe", "cheese", "spicy", "dinner", "bake", "salad", "sauce", "sweet", "kitchen", "taste"],
    "computers": ["software", "laptop", "code", "server", "network", "bug", "keyboard", "cloud", "update", "screen", "data", "chip"],
}
SHARED = ["the", "a", "today", "really", "was", "is", "very", "and", "we", "they", "new", "after", "good", "bad", "big", "quite", "again", "this", "our", "my"]
TEMPLATES = [
    "{s0} {t0} {s1} {t1}",
    "{s0} {s1} {t0} {s2} {t1} {s3}",
    "{t0} {s0} {s1} {t1} {s2} {t2}",
    "{s0} {t0} {s1} {s2} {s3} {t1} {s4}",
    "{s0} {s1} {t0}",
]


def sentence(topic: str, rng: np.random.Generator) -> str:
    words = {f"t{i}": rng.choice(TOPICS[topic]) for i in range(3)} | {f"s{i}": rng.choice(SHARED) for i in range(5)}
    text = str(rng.choice(TEMPLATES)).format(**words)
    return text[0].upper() + text[1:] + rng.choice([".", "!", "?", "."])


def generate(out: Path, rows: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    topics = [list(TOPICS)[i % len(TOPICS)] for i in range(rows)]
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": [sentence(t, rng) for t in topics], "topic": topics}).to_csv(out, index=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "generated" / "sentences.csv")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, args.rows, args.seed)
    print(f"{args.rows} sentences in {args.out}")


if __name__ == "__main__":
    main()
