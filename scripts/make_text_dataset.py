"""Write the tests' small text dataset: easy support tickets in four classes, with a fixed train/test split.

Run once; the CSV it writes is committed (tests/data/support_tickets_small.csv). The shipped dataset, harder,
comes from `python -m lambdaforge.recipes.tickets`.
Deterministic: the same seed gives the same bytes.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

CLASSES: dict[str, dict[str, list[str]]] = {
    "billing": {
        "opening": ["I was charged twice", "my invoice is wrong", "why did my card get billed",
                    "please refund my last payment", "the subscription price went up",
                    "I need a copy of my receipt", "there is an unknown charge on my statement",
                    "my payment failed", "can I change my billing address",
                    "I want to switch to the annual plan", "you billed me after I cancelled",
                    "the discount code was not applied"],
        "detail": ["for the month of {month}", "on my {card} card", "of {amount} dollars",
                   "on invoice number {num}", "after the trial ended", "for the premium plan",
                   "for two licences I never used"],
        "ending": ["please fix it", "can you help", "I would like my money back",
                   "this is the second time", "thanks", "please send a corrected invoice"],
    },
    "technical": {
        "opening": ["the app crashes when I open it", "I get an error {code} on login",
                    "the page keeps loading forever", "sync stopped working",
                    "the export button does nothing", "notifications are not arriving",
                    "the dashboard shows no data", "upload fails halfway",
                    "the api returns a timeout", "search results are empty",
                    "the screen freezes after the update", "my reports will not render"],
        "detail": ["on my {device}", "since the latest update", "in the {browser} browser",
                   "every time I press save", "when I attach a large file", "after version {version}",
                   "only on the mobile app"],
        "ending": ["is there a workaround", "please investigate", "this blocks my team",
                   "I already restarted it", "logs are attached", "thanks for looking"],
    },
    "shipping": {
        "opening": ["my package has not arrived", "the tracking number does not work",
                    "the parcel was delivered to the wrong address", "my order arrived damaged",
                    "when will my order ship", "the courier never came",
                    "I need to change the delivery address", "one item is missing from the box",
                    "the delivery is late", "can I pick up the order at a store",
                    "the shipment is stuck in customs", "I received someone else's order"],
        "detail": ["order {num}", "since last {day}", "to {city}", "with express delivery",
                   "the box was crushed", "it says delivered but it is not here",
                   "for the gift I ordered"],
        "ending": ["please send a replacement", "where is it now", "I need it by {day}",
                   "can you contact the courier", "thanks", "please update me"],
    },
    "account": {
        "opening": ["I cannot log in to my account", "please reset my password",
                    "how do I delete my account", "I want to change my email address",
                    "my account was locked", "two factor codes are not accepted",
                    "I need to add a new user to our team", "how can I change my username",
                    "someone else accessed my account", "I did not get the verification email",
                    "please merge my two accounts", "I want to update my profile name"],
        "detail": ["for {email}", "after too many attempts", "on the company workspace",
                   "since I changed phones", "for my colleague {name}", "linked to {email}",
                   "that I opened last year"],
        "ending": ["please help me get back in", "how do I do that", "it is urgent",
                   "thanks in advance", "I already tried the reset link", "please confirm"],
    },
}

FILL = {
    "month": ["january", "march", "june", "august", "october", "december"],
    "card": ["visa", "mastercard", "debit", "company"],
    "amount": ["19", "49", "120", "9.99", "300"],
    "num": ["4471", "88213", "1002", "56090", "7731"],
    "code": ["500", "403", "E42", "0x80", "timeout"],
    "device": ["iphone", "android phone", "windows laptop", "mac", "tablet"],
    "browser": ["chrome", "firefox", "safari", "edge"],
    "version": ["3.2", "4.0", "2.9.1", "5.1"],
    "day": ["monday", "tuesday", "friday", "weekend"],
    "city": ["berlin", "lyon", "austin", "osaka", "porto"],
    "email": ["anna@example.com", "ops@example.org", "my work email", "my old address"],
    "name": ["maria", "john", "li wei", "sam"],
}


def _fill(text: str, rng: random.Random) -> str:
    for key, values in FILL.items():
        token = "{" + key + "}"
        while token in text:
            text = text.replace(token, rng.choice(values), 1)
    return text


def make_rows(per_class: int = 130, seed: int = 7) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows: list[tuple[str, str, str]] = []
    for label, parts in CLASSES.items():
        seen: set[str] = set()
        while len(seen) < per_class:
            pieces = [rng.choice(parts["opening"])]
            if rng.random() < 0.75:
                pieces.append(rng.choice(parts["detail"]))
            if rng.random() < 0.6:
                pieces.append(rng.choice(parts["ending"]))
            text = _fill(", ".join(pieces), rng)
            if rng.random() < 0.5:
                text = text[0].upper() + text[1:]
            if rng.random() < 0.5:
                text += rng.choice([".", "!", "?", ""])
            seen.add(text)
        for i, text in enumerate(sorted(seen)):
            rows.append((text, label, "test" if i % 5 == 0 else "train"))
    rng.shuffle(rows)
    return rows


def main(out: Path) -> None:
    rows = make_rows()
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label", "split"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else
         Path(__file__).resolve().parents[1] / "tests/data/support_tickets_small.csv")
