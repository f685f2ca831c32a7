"""Writes the three optimisation suites (sentiment.yaml, arithmetic.yaml, extraction.yaml) beside this file.

Source: every case is written here, from the phrase lists below, by a seeded generator (seed 7); nothing is
taken from a dataset. Each suite's prompt is a deliberately rough first draft (a zero-shot instruction that does
not say what form the answer takes), the kind of prompt `workbench optimize` is for. Run it again after editing
the lists: `python examples/optimize/generate.py`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CASES = 90  # a third each for train, validation and held-out: 30 unseen cases for the verdict
PROVIDER = "local:smollm2-135m-instruct@int4"

PRODUCTS = [
    "blender",
    "headphones",
    "backpack",
    "desk lamp",
    "kettle",
    "phone case",
    "running shoes",
    "keyboard",
    "coffee grinder",
    "umbrella",
    "water bottle",
    "office chair",
    "tent",
    "toaster",
    "smart watch",
]
POSITIVE = [
    "I love this {p}, it works perfectly.",
    "The {p} exceeded my expectations, great value.",
    "Fantastic {p}: sturdy, quiet and beautifully made.",
    "Best {p} I have owned, I would buy it again.",
    "The {p} arrived early and works like a charm.",
    "Really happy with the {p}, highly recommended.",
]
NEGATIVE = [
    "The {p} broke after two days, a waste of money.",
    "Terrible {p}, it stopped working within a week.",
    "I regret buying this {p}; cheap and flimsy.",
    "The {p} arrived damaged and support never replied.",
    "Awful {p}. It is loud and falls apart.",
    "Do not buy this {p}, it is a total disappointment.",
]
NEUTRAL = [
    "The {p} arrived on Tuesday in a brown box.",
    "The {p} is blue and weighs about a kilogram.",
    "I bought the {p} for my brother last month.",
    "The {p} comes with a manual and a cable.",
    "The {p} is the same model as the one in the shop.",
    "It is a {p}. It does what the listing says.",
]

NAMES = [
    "Maria Lopez",
    "Kenji Sato",
    "Amara Okafor",
    "Lukas Brandt",
    "Sofia Rossi",
    "Omar Haddad",
    "Chloe Martin",
    "Ivan Petrov",
    "Aisha Khan",
    "Daniel Cohen",
    "Elena Novak",
    "Tomas Silva",
    "Priya Nair",
    "Jonas Berg",
]
CITIES = [
    "Lisbon",
    "Osaka",
    "Lagos",
    "Hamburg",
    "Turin",
    "Beirut",
    "Lyon",
    "Kazan",
    "Lahore",
    "Haifa",
    "Brno",
    "Porto",
    "Kochi",
    "Bergen",
]
SENTENCES = [
    "{n}, {a}, moved to {c} last spring.",
    "At {a}, {n} opened a bakery in {c}.",
    "{n} ({a}) lives in {c} and teaches piano.",
    "Born in {c}, {n} is now {a} years old.",
    "The new librarian in {c} is {n}, aged {a}.",
    "{n} turned {a} this year and still lives in {c}.",
]


def sentiment(rng: random.Random) -> list[dict]:
    cases, seen = [], set()
    for i in range(CASES):
        label, phrases = [("positive", POSITIVE), ("negative", NEGATIVE), ("neutral", NEUTRAL)][i % 3]
        text = rng.choice(phrases).format(p=rng.choice(PRODUCTS))
        while text in seen:  # every review once: a repeated input could sit in train and in held-out
            text = rng.choice(phrases).format(p=rng.choice(PRODUCTS))
        seen.add(text)
        cases.append(
            {"vars": {"input": text}, "assert": [{"type": "answer-equals", "value": label}], "tags": [label]}
        )
    return cases


def arithmetic(rng: random.Random) -> list[dict]:
    people = ["Mia", "Leo", "Ana", "Sam", "Noor", "Ben", "Ida", "Raj"]
    things = ["stickers", "apples", "marbles", "books", "cards", "shells"]
    cases = []
    for i in range(CASES):
        who, what = rng.choice(people), rng.choice(things)
        a, b = rng.randint(2, 12), rng.randint(2, 9)
        kind = ["add", "subtract", "multiply"][i % 3]
        if kind == "add":
            q, answer = f"{who} has {a} {what} and gets {b} more. How many {what} does {who} have now?", a + b
        elif kind == "subtract":
            a += b
            q, answer = f"{who} has {a} {what} and gives away {b}. How many {what} are left?", a - b
        else:
            q, answer = f"{who} buys {a} bags with {b} {what} in each bag. How many {what} is that?", a * b
        cases.append(
            {
                "vars": {"input": q},
                "assert": [{"type": "answer-equals", "value": str(answer)}],
                "tags": [kind],
            }
        )
    return cases


def extraction(rng: random.Random) -> list[dict]:
    cases = []
    for i in range(CASES):
        name, city, age = rng.choice(NAMES), rng.choice(CITIES), rng.randint(19, 78)
        text = SENTENCES[i % len(SENTENCES)].format(n=name, c=city, a=age)
        schema = {
            "type": "object",
            "required": ["name", "city", "age"],
            "properties": {
                "name": {"const": name},
                "city": {"const": city},
                "age": {"enum": [age, str(age)]},
            },
        }
        cases.append({"vars": {"input": text}, "assert": [{"type": "contains-json", "value": schema}]})
    return cases


SUITES = {
    "sentiment": (
        sentiment,
        "Classify the sentiment of the review.",
        "Product reviews labelled positive, negative or neutral (a statement of fact is neutral).",
    ),
    "arithmetic": (
        arithmetic,
        "Solve the word problem.",
        "One-step word problems (add, subtract, multiply); the answer must equal the number.",
    ),
    "extraction": (
        extraction,
        "Find the person's name, city and age in the text.",
        "Sentences about a person; the answer must contain a JSON object with name, city and age.",
    ),
}


def write(name: str) -> Path:
    make, instruction, description = SUITES[name]
    body = {
        "description": f"optimize-{name}: {description} Written by examples/optimize/generate.py (seed 7).",
        "prompts": [f"file://{name}.j2"],
        "providers": [PROVIDER],
        "tests": make(random.Random(f"{name}-7")),
        "workbench": {"params": {"temperature": 0, "max_tokens": 48}},
    }
    template = (
        "{#---\n"
        f"name: optimize-{name}\n"
        "technique: zero-shot\n"
        f"description: A first draft to optimise ({name}).\n"
        "variables:\n  - name: input\n"
        f"bound:\n  values:\n    instruction: {json.dumps(instruction)}\n"
        "sections: [Instruction, Input]\n"
        "---#}\n"
        '{% message "user" %}\n{% section "Instruction" %}\n{{ instruction }}\n{% endsection %}\n'
        '{% section "Input" %}\n{{ input }}\n{% endsection %}\n{% endmessage %}\n'
    )
    (HERE / f"{name}.j2").write_text(template)
    path = HERE / f"{name}.yaml"
    header = "# Generated by examples/optimize/generate.py: edit the generator, not this file.\n"
    path.write_text(header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=120))
    return path


if __name__ == "__main__":
    for suite in SUITES:
        print(write(suite))
