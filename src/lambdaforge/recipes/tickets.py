"""The `text` recipe's shipped dataset: generated customer-support tickets, hard enough to tell models apart.

`python -m lambdaforge.recipes.tickets --out PATH` writes the CSV that ships as
`lambdaforge/recipes/data/support_tickets.csv`, byte for byte (a seeded `random.Random`, no downloads).

What makes it hard (a frozen MiniLM with a linear head scores around 0.9, not 1.0):
- ten classes whose vocabularies overlap: billing, refund and cancellation all talk about charges, plans and
  money; login and account about passwords, emails and profiles; bug and performance about the app, pages and
  errors; shipping and returns about orders, packages and labels; feature requests about the product's features;
- ambiguous rows (`AMBIGUOUS` of them): a second intent from a neighbouring class is mixed in; the label is the
  primary intent, which comes first and is the more elaborate of the two;
- vague rows: short tickets that only hint at the intent ("question about my bill");
- mislabeled rows (`MISLABELED` of each split): the label is another class, mostly a neighbouring one, as a
  hurried human annotator would get it wrong;
- noise: greetings, signatures, order and account numbers, typos, case, and unrelated background sentences
  (which dilute a mean-pooled embedding), with lengths from 5 to about 200 word-piece tokens: most tickets
  short or medium, a tail of long ones (the recipe truncates at 128 tokens).

Columns: `text`, `label`, `split` (a fixed, stratified 80/20 train/test split).
"""

from __future__ import annotations

import argparse
import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SEED = 20240611
ROWS_PER_CLASS = 240
TEST_FRACTION = 0.2
AMBIGUOUS = 0.14  # of the rows: a second intent mixed in
VAGUE = 0.06  # of the rows: only a hint of the intent
MISLABELED = 0.05  # of each split: the label is wrong
TYPO_RATE = 0.025  # per word
MAX_WORDS = 160  # about 200 word-piece tokens with punctuation and typos

# Slot fillers, shared by every class (shared context is what makes the vocabulary overlap).
SLOTS: dict[str, Sequence[str]] = {
    "product": ("the app", "the dashboard", "the mobile app", "the web portal", "the desktop client", "your website",
                "the reporting page", "the admin console", "the android app", "the iphone app"),
    "plan": ("premium plan", "basic plan", "team plan", "annual subscription", "monthly subscription",
             "pro account", "family plan", "business plan"),
    "amount": ("$12.99", "$49", "$120", "29 euros", "$9.99", "$250", "15 pounds", "$74.50", "$5", "$399"),
    "date": ("last tuesday", "yesterday", "on the 3rd", "two weeks ago", "this morning", "last month",
             "on friday", "three days ago", "at the start of the month", "over the weekend"),
    "item": ("the blue jacket", "the headphones", "the coffee grinder", "the desk lamp", "a pair of shoes",
             "the phone case", "the backpack", "the kettle", "the keyboard", "the yoga mat", "the charger"),
    "device": ("iphone", "android phone", "windows laptop", "mac", "chromebook", "ipad", "work computer",
               "samsung tablet"),
    "browser": ("chrome", "firefox", "safari", "edge"),
    "feature": ("export to csv", "dark mode", "a calendar view", "bulk editing", "shared folders",
                "two step approval", "custom reports", "an offline mode", "keyboard shortcuts", "saved filters",
                "a slack integration", "recurring tasks"),
    "carrier": ("UPS", "DHL", "FedEx", "the postal service", "the courier", "USPS"),
    "action": ("open a report", "save a file", "log an expense", "upload a photo", "search", "open the settings",
               "export my data", "switch projects", "send a message", "load the inbox"),
    "error": ("error 500", "an error 0x80", "a blank white screen", "'something went wrong'", "error code 403",
              "a timeout error", "an unknown error"),
    "card": ("card", "credit card", "visa", "mastercard", "debit card", "paypal account", "company card"),
    "person": ("my colleague", "my manager", "my wife", "a new team member", "my assistant", "my son"),
}
NAMES = ("Anna", "Li Wei", "Marco", "Priya", "Tom", "Sofia", "Kenji", "Olga", "James", "Fatima", "Lucas", "Mei",
         "Daniel", "Aisha", "Pedro", "Hannah", "Omar", "Julia", "Sam", "Ravi")
COMPANIES = ("Acme Corp", "Northwind", "Blue Fox Studio", "Greenleaf Ltd", "Contoso", "Pixel & Co")

# Each class: core sentences (the intent), details (more of the same intent, for longer tickets) and vague
# openers (only a hint). Words like charge, plan, account, order, app and page appear in several classes.
CLASSES: dict[str, dict[str, Sequence[str]]] = {
    "billing": {
        "core": (
            "I was charged twice for my {plan} this month",
            "there is a charge of {amount} on my {card} that I do not recognise",
            "my invoice shows the wrong amount for the {plan}",
            "why did the price of my {plan} go up to {amount}",
            "I need a copy of my invoice for {date} for our accounting",
            "my payment of {amount} failed but the money left my {card}",
            "please update the {card} on file for my subscription",
            "the invoice is addressed to the wrong company name, can you correct it",
            "I was billed {amount} for the {plan} but I am on the cheaper plan",
            "can you explain the extra fee on my latest bill",
            "how do I change my billing address for the invoices",
            "you charged my old {card} instead of the new one",
            "the tax on my invoice is wrong, we are VAT exempt",
            "I want to switch from monthly to annual billing",
        ),
        "detail": (
            "The statement says {amount} but the plan page says something else.",
            "I checked my bank app and the charge is still pending.",
            "Our finance team needs the invoice number and the VAT id on it.",
            "The payment page showed an error but my card was still charged.",
            "I only have one subscription so this charge makes no sense.",
        ),
        "vague": ("question about my bill", "something is off with my payment", "about the charge on my card",
                  "invoice question"),
    },
    "refund": {
        "core": (
            "I would like a refund of {amount} for my {plan}",
            "please give me my money back for the order, it never worked",
            "I cancelled my {plan} {date} but was still charged, please refund it",
            "when will I receive the refund you promised {date}",
            "the refund of {amount} has not reached my {card} yet",
            "I was charged twice and want the duplicate payment refunded",
            "can I get a partial refund since the service was down for a week",
            "I returned {item} {date} and still have not been refunded",
            "please reverse the charge of {amount}, I did not mean to upgrade",
            "I want my money back, the {plan} does not do what was advertised",
            "you said the refund would take five days and it has been three weeks",
            "refund the renewal please, I forgot to turn off auto renew",
        ),
        "detail": (
            "The refund should go back to the same {card} I paid with.",
            "Your agent confirmed the refund on the phone but nothing arrived.",
            "I have the receipt and the confirmation email if you need them.",
            "I do not want store credit, I want the money returned.",
            "Please confirm the refund amount and when it will show up.",
        ),
        "vague": ("money back please", "about my refund", "refund status?", "where is my money"),
    },
    "account": {
        "core": (
            "I want to change the email address on my account",
            "how do I update my profile name and photo",
            "please add {person} as a user on our team account",
            "I need to transfer the account to {person}",
            "can you delete my account and all my personal data",
            "how do I change the owner of our company account",
            "I want to merge my two accounts into one",
            "please update the phone number on my profile",
            "how can I download a copy of all my account data",
            "I need to remove {person} from our account, they left the company",
            "can I change my username without losing my history",
            "how do I change the language and time zone in my account settings",
        ),
        "detail": (
            "The account is registered to my old work email which I no longer use.",
            "I am the admin of the team account if that helps.",
            "The profile page does not let me edit that field.",
            "My account number is AC-{number}.",
            "We are reorganising our team so the permissions need to change too.",
        ),
        "vague": ("question about my account", "account settings help", "need help with my profile",
                  "change account details"),
    },
    "login": {
        "core": (
            "I cannot log in to my account, it says the password is wrong",
            "the password reset email never arrives",
            "my two factor codes are not accepted when I sign in",
            "I am locked out after too many login attempts",
            "I lost the phone with my authenticator app and cannot sign in",
            "single sign on stopped working for our team this morning",
            "the login page keeps sending me back to the sign in screen",
            "I forgot my password and the reset link has expired",
            "it says my account is disabled when I try to log in",
            "I cannot access my account since I changed phones",
            "the verification code sms never comes so I cannot get in",
            "after the password change I cannot sign in on my {device}",
        ),
        "detail": (
            "I have tried resetting the password three times already.",
            "I checked the spam folder and there is nothing there.",
            "I am sure I am typing the right password.",
            "It works for my colleagues but not for me.",
            "I need to get in today because I have a deadline.",
        ),
        "vague": ("can't get into my account", "login problem", "sign in issue", "locked out again"),
    },
    "bug": {
        "core": (
            "{product} crashes every time I try to {action}",
            "I get {error} when I {action} in {product}",
            "the export button does nothing in {browser}",
            "the dates in my report are shown one day off",
            "{product} shows {error} after the latest update",
            "the save button is greyed out and my changes are lost",
            "notifications are not arriving on my {device}",
            "the search returns results from the wrong project",
            "uploading a file fails halfway with {error}",
            "the numbers in the dashboard total do not add up, it looks like a bug",
            "sync stopped working between my {device} and the website",
            "the page layout is broken and buttons overlap on my {device}",
        ),
        "detail": (
            "I already restarted {product} and cleared the cache.",
            "It happens every single time, steps to reproduce are attached.",
            "The console shows a javascript error when it happens.",
            "It started right after the last update.",
            "Reinstalling did not fix it.",
        ),
        "vague": ("something is broken", "the app is not working right", "found a bug I think", "error again"),
    },
    "performance": {
        "core": (
            "{product} is extremely slow to load today",
            "it takes over a minute to {action} in {product}",
            "the dashboard keeps loading forever and then times out",
            "{product} freezes for several seconds whenever I scroll",
            "search has become very slow since last week",
            "the app uses so much battery and memory on my {device} that it lags",
            "pages take ages to open in {browser}, everything else is fast",
            "the sync is very slow, large files take hours",
            "{product} gets slower the more items I add to a project",
            "reports that used to take seconds now take several minutes",
            "the whole site is sluggish during business hours",
            "typing in the editor lags behind by a second or two",
        ),
        "detail": (
            "My internet connection is fine, other sites load instantly.",
            "It is not crashing, just painfully slow.",
            "The loading spinner just keeps spinning.",
            "Our whole office sees the same delay.",
            "It was fast a month ago with the same amount of data.",
        ),
        "vague": ("everything is so slow", "the app is laggy", "loading takes forever", "performance is bad"),
    },
    "shipping": {
        "core": (
            "my order {order} has not arrived yet",
            "the tracking for {order} has not updated since {date}",
            "{carrier} says the package was delivered but I never got it",
            "can I change the delivery address for order {order}",
            "my package was delivered to the wrong address",
            "when will {item} be shipped, it says processing for a week",
            "the parcel arrived damaged and the box was crushed",
            "one item is missing from my package",
            "can I upgrade to express delivery for order {order}",
            "do you ship to Canada and how long does delivery take",
            "the courier left a note but I was home all day",
            "my order was split into two shipments and only one came",
        ),
        "detail": (
            "The tracking number from {carrier} does not work on their website.",
            "I need it delivered before my trip next week.",
            "The estimated delivery date has already passed.",
            "I paid for fast shipping.",
            "Nobody from {carrier} rang the bell.",
        ),
        "vague": ("where is my package", "delivery question", "order still not here", "tracking not working"),
    },
    "returns": {
        "core": (
            "I want to return {item} from order {order}",
            "how do I send back {item}, it is the wrong size",
            "can you send me a return label for {item}",
            "I would like to exchange {item} for a different colour",
            "the return window says closed but I bought it {date}",
            "I received the wrong item and want to send it back",
            "is the return shipping free or do I pay for the label",
            "{item} is faulty and I want to return it under warranty",
            "can I return part of my order and keep the rest",
            "the drop off point refused my return parcel",
            "I sent the return {date}, did you receive {item}",
            "I want to swap {item} for a bigger size",
        ),
        "detail": (
            "It is still in the original packaging with the tags on.",
            "I have the order confirmation and the packing slip.",
            "The return form on the website gives an error.",
            "I would prefer an exchange over a refund if possible.",
            "I used {carrier} to send it back.",
        ),
        "vague": ("return question", "need to send something back", "return label please", "exchange an item"),
    },
    "feature_request": {
        "core": (
            "it would be great if {product} had {feature}",
            "please add {feature}, we really need it",
            "are you planning to support {feature} in {product}",
            "could you add an option to {action} in bulk",
            "I would love {feature} on my {device}",
            "suggestion: let us customise the dashboard widgets",
            "can you make it possible to share reports with people outside the team",
            "we would pay more for the {plan} if it had {feature}",
            "any plans for {feature}, your competitors have it",
            "please let admins set default settings for the whole team",
            "it would help a lot if I could {action} from the home screen",
            "feature idea: {feature} for the {plan}",
        ),
        "detail": (
            "Our team would use it every day.",
            "Right now we have to do it by hand, which takes hours.",
            "Other tools we use already have this.",
            "Is there a public roadmap where I can vote for it?",
            "I know it is not a bug, just a wish.",
        ),
        "vague": ("a suggestion for the app", "idea for a new feature", "wish list item", "would be nice to have"),
    },
    "cancellation": {
        "core": (
            "please cancel my {plan} before the next charge",
            "how do I cancel my subscription, I cannot find the option",
            "I want to end my {plan} at the end of this month",
            "cancel my account and stop charging my {card}",
            "I no longer need the {plan}, please do not renew it",
            "we are moving to another provider and want to cancel",
            "please downgrade and then cancel our team plan",
            "turn off auto renewal for my {plan}",
            "I tried to cancel {date} but the plan is still active",
            "can I pause my subscription instead of cancelling",
            "confirm that my subscription is cancelled and I will not be billed again",
            "I want to close my account and cancel all services",
        ),
        "detail": (
            "I do not want to be charged for another month.",
            "The cancel button in the settings leads to an error page.",
            "Please send me a confirmation email once it is done.",
            "It is just too expensive for us right now.",
            "We only needed it for one project.",
        ),
        "vague": ("cancel please", "stop my plan", "end subscription", "do not renew"),
    },
}

# Which classes a class is confused with: its ambiguous rows take their second intent from here, and most of
# its mislabeled rows their wrong label.
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "billing": ("refund", "cancellation", "account"),
    "refund": ("billing", "returns", "cancellation"),
    "account": ("login", "billing", "cancellation"),
    "login": ("account", "bug"),
    "bug": ("performance", "login", "feature_request"),
    "performance": ("bug", "feature_request"),
    "shipping": ("returns", "refund"),
    "returns": ("refund", "shipping"),
    "feature_request": ("bug", "performance"),
    "cancellation": ("refund", "billing", "account"),
}

GREETINGS = ("Hi,", "Hello,", "Hello team,", "Hi there,", "Hey,", "Good morning,", "Dear support,",
             "To whom it may concern,", "Hi support team,", "Good afternoon,")
SECOND_INTENT = ("Also, {}.", "And one more thing: {}.", "Separately, {}.", "Oh and {}.", "While I am here, {}.",
                 "On top of that {}.", "Not sure if related but {}.")
BACKGROUND = (
    "I have been a customer for {years} years.",
    "This is the second time I am writing about this.",
    "I'm writing from my phone so sorry for any typos.",
    "I tried calling but the line was busy for an hour.",
    "We use your product across our whole team of {years}0 people.",
    "I looked through the help center but could not find an answer.",
    "My order number is {order} in case you need it.",
    "My customer id is {number}.",
    "I am travelling this week so email is the best way to reach me.",
    "Your chat bot could not help me with this.",
    "I usually love your service, which is why this is so frustrating.",
    "A friend recommended you to me last year.",
    "I am not very technical so please keep it simple.",
    "This is for my small business and we rely on it daily.",
    "I have attached a screenshot.",
    "I already spoke to someone called {name} about this.",
    "It is quite urgent for us.",
    "Sorry if this is the wrong place to ask.",
    "We are based in Europe so please mind the time difference.",
    "Please reply to this email rather than calling me.",
    "I was told to write here by your sales team.",
    "I am on the {plan} if that matters.",
    "I use it mostly on my {device}.",
    "Thank you for your patience with me.",
)
CLOSINGS = ("Thanks", "Thanks!", "Thank you.", "Regards, {name}", "Best, {name}", "Cheers, {name}",
            "Sent from my iPhone", "Kind regards, {name} ({company})", "Thanks in advance", "{name}", "Many thanks.",
            "Looking forward to your reply.")


@dataclass(frozen=True)
class Ticket:
    """One generated row, with what the CSV does not say: the true intent and how the row was made."""

    text: str
    label: str  # as written: the intent, or another class for a mislabeled row
    intent: str  # the primary intent the text was generated from
    split: str
    second: str | None = None  # the other intent mixed in (ambiguous rows)
    vague: bool = False

    @property
    def mislabeled(self) -> bool:
        return self.label != self.intent


def _fill(rng: random.Random, template: str) -> str:
    out = template
    for key, values in SLOTS.items():
        while "{" + key + "}" in out:
            out = out.replace("{" + key + "}", rng.choice(values), 1)
    while "{order}" in out:
        out = out.replace("{order}", rng.choice(("#", "", "no. ", "ORD-")) + str(rng.randint(10000, 99999)), 1)
    while "{number}" in out:
        out = out.replace("{number}", str(rng.randint(100000, 999999)), 1)
    while "{years}" in out:
        out = out.replace("{years}", str(rng.randint(2, 9)), 1)
    while "{name}" in out:
        out = out.replace("{name}", rng.choice(NAMES), 1)
    while "{company}" in out:
        out = out.replace("{company}", rng.choice(COMPANIES), 1)
    return out


def _sentence(text: str, rng: random.Random) -> str:
    text = text[0].upper() + text[1:]
    if text[-1] in ".?!":
        return text
    return text + rng.choice((".", ".", ".", "!", "?", "", ".."))


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # swap two letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:  # drop one
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]  # double one


def _target_words(rng: random.Random) -> int:
    """How long a ticket should be: mostly short or medium, a tail of long ones."""
    bucket = rng.random()
    if bucket < 0.35:
        return rng.randint(4, 16)
    if bucket < 0.80:
        return rng.randint(17, 45)
    if bucket < 0.95:
        return rng.randint(46, 95)
    return rng.randint(96, MAX_WORDS)


def _words(parts: list[str]) -> int:
    return sum(len(p.split()) for p in parts)


def _ticket(rng: random.Random, intent: str, *, ambiguous: bool, vague: bool) -> tuple[str, str | None]:
    spec = CLASSES[intent]
    target = _target_words(rng)
    second = rng.choice(NEIGHBOURS[intent]) if ambiguous else None
    core = _sentence(_fill(rng, rng.choice(spec["vague"] if vague else spec["core"])), rng)
    body = [core]
    if second is not None:
        other = _fill(rng, rng.choice(CLASSES[second]["core"]))
        body.append(rng.choice(SECOND_INTENT).format(other))
        target = max(target, _words(body) + rng.randint(0, 10))
    details = list(spec["detail"]) if not vague else []
    rng.shuffle(details)
    before: list[str] = []
    after: list[str] = []
    if rng.random() < 0.4 or target > 20:
        before.append(rng.choice(GREETINGS))
    # Fill to the target: the class's own details first (at most two), then background that says nothing of it.
    used_details = 0
    background = list(BACKGROUND)
    rng.shuffle(background)
    while _words(before + body + after) < target and (details or background):
        if details and used_details < 2 and rng.random() < 0.5:
            body.insert(1, _fill(rng, details.pop()))
            used_details += 1
        elif background:
            sentence = _fill(rng, background.pop())
            (before if rng.random() < 0.5 else after).append(sentence)
        else:
            break
    if rng.random() < 0.55 and _words(before + body + after) + 2 <= MAX_WORDS:
        after.append(_fill(rng, rng.choice(CLOSINGS)))
    parts = before + body + after
    while _words(parts) > MAX_WORDS and len(parts) > 1:  # drop background from the ends, never the core
        parts.pop(0 if parts[0] is not core else -1)
    words = " ".join(parts).split()
    while len(words) < 5:  # five words at least: five word-piece tokens at least
        words.append(rng.choice(("please", "help", "thanks", "urgent", "asap", "pls")))
    words = [_typo(w, rng) if rng.random() < TYPO_RATE else w for w in words]
    text = " ".join(words)
    style = rng.random()
    if style < 0.2:
        text = text.lower()
    elif style < 0.25:
        text = text.replace(",", "").replace(".", "")
    return text, second


def generate(seed: int = SEED, rows_per_class: int = ROWS_PER_CLASS) -> list[Ticket]:
    """The tickets, in file order: every class `rows_per_class` times, split and mislabeled as documented."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    classes = sorted(CLASSES)
    drafts: list[tuple[str, str, str | None, bool, str]] = []  # text, intent, second, vague, split
    for intent in classes:
        n_test = round(rows_per_class * TEST_FRACTION)
        splits = ["test"] * n_test + ["train"] * (rows_per_class - n_test)
        rng.shuffle(splits)
        for split in splits:
            roll = rng.random()
            ambiguous, vague = roll < AMBIGUOUS, AMBIGUOUS <= roll < AMBIGUOUS + VAGUE
            text, second = _ticket(rng, intent, ambiguous=ambiguous, vague=vague)
            drafts.append((text, intent, second, vague, split))
    labels = [intent for _, intent, _, _, _ in drafts]
    for split in ("train", "test"):  # the same fraction of wrong labels in each split, spread over the classes
        members = [i for i, d in enumerate(drafts) if d[4] == split]
        for i in rng.sample(members, round(len(members) * MISLABELED)):
            intent = drafts[i][1]
            if rng.random() < 0.75:
                labels[i] = rng.choice(NEIGHBOURS[intent])
            else:
                labels[i] = rng.choice([c for c in classes if c != intent])
    tickets = [Ticket(text=text, label=label, intent=intent, split=split, second=second, vague=vague)
               for (text, intent, second, vague, split), label in zip(drafts, labels, strict=True)]
    order = list(range(len(tickets)))
    rng.shuffle(order)
    return [tickets[i] for i in order]


def to_csv(tickets: Sequence[Ticket]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["text", "label", "split"])
    for t in tickets:
        writer.writerow([t.text, t.label, t.split])
    return buf.getvalue()


def write(path: Path, seed: int = SEED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_csv(generate(seed)).encode("utf-8"))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lambdaforge.recipes.tickets",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    parser.add_argument("--seed", type=int, default=SEED, help="a different seed, a different dataset")
    args = parser.parse_args(argv)
    tickets = generate(args.seed)
    write(args.out, args.seed)
    wrong = sum(t.mislabeled for t in tickets)
    print(f"wrote {args.out}: {len(tickets)} rows, {len(CLASSES)} classes, {wrong} mislabeled")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
