"""Write the embedded generative default in data/tickets/ (run once; outputs are committed).

Support messages to Kestrel, the fictional bank of data/sample/, each with the JSON ticket
a support system would file for it. Every clause was written for this project; the script
combines them, seeded, so the data is reproducible and its origin is plain. The ticket:

- ``intent``: one of the twelve intents of data/sample/;
- ``product``: what the message is about (``schema.json`` lists them);
- ``amount`` and ``currency``: the amount the ticket is about and its ISO code, both null
  where the message states none. Messages may state other amounts too (a balance, what
  was expected): the ticket's amount is the one at issue;
- ``urgency``: high for a lost or stolen card or a message that says it is urgent, low
  for one that says it can wait, medium otherwise;
- ``reference``: a transaction reference (``KST-`` and six letters or digits) or the last
  four digits of a card (``card ending 1234``) when the message gives one, else null;
- ``summary``: one sentence in the house style.

Files (OpenAI chat fine-tuning format, one ``{"messages": [...]}`` per line):

1. ``tickets.jsonl``: the pool (app and web chat), split later by ``prepare``. About one
   record in ten is two-turn: the customer leaves the amount out, the assistant asks for it,
   the customer answers, and the assistant files the ticket.
2. ``shifted.jsonl``: the same intents from terse mobile chat (abbreviations, no
   greetings, some Spanish or German), as data/sample/shifted.csv is for classification.
3. ``schema.json``: the JSON Schema every ticket satisfies (``task.output_schema``).

The general probe and replay prompts are data/sample/'s. Usage:
``python scripts/make_ticket_data.py [--out data/tickets]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sample_data import CLOSINGS, GREETINGS, PII, add_typos, sentence

SEED = 20261203
PER_INTENT = 56
SHIFTED_PER_INTENT = 18
SYSTEM = (
    "You file support tickets for Kestrel bank. Read the customer's message and answer with "
    "the ticket as one JSON object: intent, product, amount, currency, urgency, reference, summary."
)
CURRENCIES = {
    "GBP": ["£{a}", "{a} pounds", "GBP {a}"],
    "EUR": ["€{a}", "{a} euros", "EUR {a}"],
    "USD": ["${a}", "{a} dollars", "USD {a}"],
    "CHF": ["CHF {a}", "{a} Swiss francs"],
    "PLN": ["{a} zł", "PLN {a}"],
}
CURRENCY_WEIGHTS = {"GBP": 0.62, "EUR": 0.18, "USD": 0.1, "CHF": 0.05, "PLN": 0.05}
PRODUCTS = {
    "debit_card": ["debit card", "card", "Kestrel card"],
    "credit_card": ["credit card", "Kestrel credit card"],
    "current_account": ["current account", "account", "main account"],
    "savings_account": ["savings account", "saver account"],
    "mobile_app": ["app", "mobile app", "banking app"],
    "online_banking": ["online banking", "website"],
}

# intent -> (products it concerns, share of messages stating the amount, situations that
# state one ({amount}), situations that state none, summary template). {ref}, where a
# situation has it, is given four times in five.
INTENTS: dict[str, tuple[list[str], float, list[str], list[str], str]] = {
    "card_arrival": (
        ["debit_card", "credit_card"], 0.0, [],
        ["I ordered a new {product} two weeks ago and it still hasn't arrived",
         "my replacement {product} never turned up",
         "the app says my {product} was dispatched last week but nothing has come",
         "still waiting on the {product} I requested, it's been 12 days",
         "I moved house and I think my new {product} went to the old address"],
        "Customer's new {product} has not arrived.",
    ),
    "lost_or_stolen_card": (
        ["debit_card", "credit_card"], 0.0, [],
        ["I lost my {product} last night, {ref}",
         "my wallet was stolen with my {product} inside",
         "I can't find my {product} anywhere and I'm worried someone has it",
         "my {product} was pickpocketed on the train, {ref}",
         "someone took my bag at the gym and my {product} was in it"],
        "Customer reports a lost or stolen {product} and needs it blocked.",
    ),
    "card_declined": (
        ["debit_card", "credit_card"], 0.5,
        ["my {product} was declined paying {amount} at a supermarket",
         "tried to pay {amount} for a train ticket and the {product} was declined, {ref}",
         "a {amount} payment on my {product} got refused twice"],
        ["the {product} keeps getting refused online even though I have money",
         "my {product} stopped working in shops today",
         "my {product} is declined everywhere since yesterday"],
        "Customer's {product} was declined{for_amount}.",
    ),
    "transfer_not_received": (
        ["current_account", "savings_account"], 0.75,
        ["I sent {amount} from my {product} three days ago and my landlord hasn't received it, {ref}",
         "a transfer of {amount} to my sister still hasn't arrived",
         "the {amount} I moved out of my {product} on Monday is not showing on the other side",
         "my payment of {amount} says completed but the recipient has nothing, {ref}"],
        ["a transfer from my {product} to my sister still hasn't arrived",
         "my payment says completed but the recipient has nothing, {ref}"],
        "Customer's transfer{of_amount} has not reached the recipient.",
    ),
    "refund_not_showing": (
        ["debit_card", "credit_card", "current_account"], 0.75,
        ["a shop refunded {amount} to my {product} a week ago and I can't see it",
         "I returned an order and was promised a refund of {amount}, still nothing, {ref}",
         "the merchant says the {amount} refund was processed but it's not on my {product}"],
        ["waiting for a refund that should be back on my {product} by now",
         "I returned an order weeks ago and the refund never came, {ref}"],
        "Customer's refund{of_amount} has not appeared on their {product}.",
    ),
    "unrecognised_charge": (
        ["debit_card", "credit_card", "current_account"], 0.75,
        ["there is a charge of {amount} on my {product} that I don't recognise, {ref}",
         "someone took {amount} from my {product} and it wasn't me",
         "I see a payment of {amount} to a company I've never heard of",
         "a {amount} transaction appeared on my {product} last night, {ref}"],
        ["there is a charge on my {product} that I don't recognise, {ref}",
         "I see a payment to a company I've never heard of"],
        "Customer does not recognise a charge{of_amount} on their {product}.",
    ),
    "login_problem": (
        ["mobile_app", "online_banking"], 0.0, [],
        ["I can't log in to the {product}, it says my password is wrong",
         "the {product} keeps locking me out after the security code",
         "I changed phones and now I can't get into the {product}",
         "every time I sign in to the {product} it crashes"],
        "Customer cannot log in to the {product}.",
    ),
    "update_details": (
        ["current_account", "mobile_app"], 0.0, [],
        ["I moved house and need to change my address on my {product}",
         "how do I update my phone number in the {product}?",
         "I got married and want my new surname on my {product}",
         "my email has changed, please update it on my {product}"],
        "Customer wants to update their personal details on their {product}.",
    ),
    "exchange_rate_fees": (
        ["debit_card", "credit_card"], 0.75,
        ["I paid {amount} abroad with my {product} and was charged a fee I didn't expect",
         "why was the exchange rate so bad on my {amount} purchase, {ref}",
         "the {product} charged me extra on a {amount} payment in another currency",
         "my {amount} cash withdrawal on holiday cost far more than it should"],
        ["I was told there were no fees abroad but my {product} charged me one",
         "the exchange rate on my holiday spending was terrible, {ref}"],
        "Customer questions the exchange rate or fee on a foreign payment{of_amount}.",
    ),
    "close_account": (
        ["current_account", "savings_account"], 0.0, [],
        ["I want to close my {product}",
         "please close my {product}, I'm moving to another bank",
         "how do I shut down my {product} and get my money out?",
         "I'd like to cancel my {product} this month"],
        "Customer wants to close their {product}.",
    ),
    "top_up_failed": (
        ["current_account", "mobile_app"], 0.75,
        ["I tried to top up {amount} in the {product} and it failed",
         "my top-up of {amount} was taken from my other bank but never arrived, {ref}",
         "adding {amount} to my {product} keeps failing with an error"],
        ["the top-up didn't work but the money left my other bank, {ref}",
         "topping up my {product} fails every time"],
        "Customer's top-up{of_amount} failed.",
    ),
    "atm_cash_issue": (
        ["debit_card"], 0.75,
        ["the ATM didn't give me any cash but took {amount} from my {product}",
         "I withdrew {amount} and only got half of it out of the machine",
         "the cash machine kept my {product} and charged me {amount}, {ref}",
         "an ATM charged me twice for a {amount} withdrawal"],
        ["the cash machine gave me nothing but my {product} was charged, {ref}",
         "an ATM swallowed my {product} and still took the money"],
        "Customer did not receive cash from an ATM{for_amount}.",
    ),
}  # fmt: skip
DISTRACTOR_AMOUNTS = [
    "My balance is {other}. ", "I normally spend about {other} a week. ",
    "I've already paid {other} this month in fees. ",
]  # fmt: skip
URGENT = [" This is urgent.", " Please sort this ASAP.", " I need this fixed right now!"]
CAN_WAIT = [" No rush, whenever you can.", " It can wait until next week."]
SHIFTED_SITUATIONS = {
    "card_arrival": [
        "card not here yet",
        "wheres my new card",
        "mi tarjeta no llega",
        "still no card in post",
    ],
    "lost_or_stolen_card": [
        "lost card pls block {ref}",
        "card stolen!!",
        "meine karte ist weg",
        "cant find card {ref}",
    ],
    "card_declined": [
        "card declined {amount}",
        "karte abgelehnt",
        "payment refused y",
        "declined again {amount}",
    ],
    "transfer_not_received": [
        "sent {amount} not arrived",
        "transfer {amount} missing {ref}",
        "transferencia {amount} no llega",
        "money not arrived {ref}",
    ],
    "refund_not_showing": [
        "refund {amount} where",
        "no refund yet {ref}",
        "rückerstattung {amount} fehlt",
        "refund missing",
    ],
    "unrecognised_charge": [
        "dont know this {amount} charge",
        "charge {amount} not me {ref}",
        "cargo {amount} no es mio",
        "weird charge on card",
    ],
    "login_problem": ["cant login app", "locked out again", "no puedo entrar app", "login broken"],
    "update_details": [
        "change address pls",
        "new phone number update",
        "neue adresse ändern",
        "update my email",
    ],
    "exchange_rate_fees": [
        "fee on {amount} abroad??",
        "bad rate on {amount}",
        "gebühr {amount} ausland",
        "why fee abroad {ref}",
    ],
    "close_account": ["close my account", "want to close acc", "cerrar cuenta", "konto schließen"],
    "top_up_failed": [
        "top up {amount} failed",
        "topup fail {ref}",
        "aufladen {amount} fehlgeschlagen",
        "cant top up",
    ],
    "atm_cash_issue": [
        "atm no cash took {amount}",
        "atm kept card {ref}",
        "cajero no dio {amount}",
        "atm ate my money",
    ],
}
ASK_AMOUNT = "Could you tell me the amount involved and, if you have it, the transaction reference?"


def money(rng: random.Random, currency: str) -> tuple[float, str]:
    value = round(rng.choice([rng.uniform(3, 80), rng.uniform(80, 900), rng.uniform(900, 4000)]), 2)
    if rng.random() < 0.3:
        value = float(round(value))
    text = f"{value:,.2f}" if value % 1 or rng.random() < 0.5 else f"{int(value):,}"
    return value, rng.choice(CURRENCIES[currency]).format(a=text)


def currency_of(rng: random.Random, intent: str) -> str:
    if intent == "exchange_rate_fees":
        return rng.choice(["EUR", "USD", "CHF", "PLN"])
    return rng.choices(list(CURRENCY_WEIGHTS), weights=list(CURRENCY_WEIGHTS.values()))[0]


def reference(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return "KST-" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
    return f"card ending {rng.randrange(1000, 10000)}"


def filled(template: str, slots: dict[str, str]) -> str:
    out = template
    for key, value in slots.items():
        out = out.replace("{" + key + "}", value)
    return out


def ticket_for(intent: str, rng: random.Random, shifted: bool) -> tuple[str, dict, str | None]:
    """(the customer's text, the ticket, the follow-up turn giving the amount or None)."""
    products, amount_share, with_amount, without, summary = INTENTS[intent]
    if shifted:
        with_amount = [t for t in SHIFTED_SITUATIONS[intent] if "{amount}" in t]
        without = [t for t in SHIFTED_SITUATIONS[intent] if "{amount}" not in t]
    product = rng.choice(products)
    wants_amount = bool(with_amount) and (not without or rng.random() < amount_share)
    template = rng.choice(with_amount if wants_amount else without)
    currency = currency_of(rng, intent)
    value, amount_text = money(rng, currency)
    ref = reference(rng) if "{ref}" in template and rng.random() < 0.8 else None
    ref_text = (
        "" if ref is None else (rng.choice(["ref ", "reference ", ""]) + ref if ref[:4] == "KST-" else ref)
    )
    slots = {"product": rng.choice(PRODUCTS[product]), "ref": ref_text, "amount": amount_text}
    text = filled(template, slots).rstrip(", ").rstrip()
    follow_up = None
    if not shifted and not wants_amount and amount_share > 0.5 and rng.random() < 0.8:
        value, amount_text = money(rng, currency)  # the assistant asks, the customer answers
        ref = ref or (reference(rng) if rng.random() < 0.5 else None)
        follow_up = f"It was {amount_text}" + (f", {ref}" if ref else "") + "."
        wants_amount = True
    ticket = {
        "intent": intent,
        "product": product,
        "amount": value if wants_amount else None,
        "currency": currency if wants_amount else None,
        "urgency": "high" if intent == "lost_or_stolen_card" else "medium",
        "reference": ref,
        "summary": filled(summary, {
            "product": product.replace("_", " "),
            "of_amount": f" of {value:.2f} {currency}" if wants_amount else "",
            "for_amount": f" for {value:.2f} {currency}" if wants_amount else "",
        }),
    }  # fmt: skip
    return text, ticket, follow_up


def compose(intent: str, rng: random.Random, shifted: bool) -> tuple[list[dict], dict]:
    text, ticket, follow_up = ticket_for(intent, rng, shifted)
    if shifted:
        message = rng.choice(["", "", "", "hi ", "pls ", "help "]) + text.lower()
        message += rng.choice(["", "", " pls", " asap", " ??", " thx", " !!", " 🙏"])
        if rng.random() < 0.3:
            message = add_typos(message, rng, 1)
        if message.endswith("asap") and ticket["urgency"] == "medium":
            ticket["urgency"] = "high"
    else:
        message = rng.choice(GREETINGS)
        if rng.random() < 0.25:  # another amount that is not the ticket's
            _, other = money(rng, rng.choice(list(CURRENCIES)))
            message += rng.choice(DISTRACTOR_AMOUNTS).format(other=other)
        message += sentence(text)
        roll = rng.random()
        if roll < 0.15 and ticket["urgency"] == "medium":
            message, ticket["urgency"] = message + rng.choice(URGENT), "high"
        elif roll < 0.25 and ticket["urgency"] == "medium":
            message, ticket["urgency"] = message + rng.choice(CAN_WAIT), "low"
        if rng.random() < 0.12:
            message += " " + sentence(rng.choice(PII))
        message += rng.choice(CLOSINGS)
        if rng.random() < 0.2:
            message = add_typos(message, rng, rng.choice([1, 2]))
    turns = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": message.strip()}]
    if follow_up is not None:
        turns += [{"role": "assistant", "content": ASK_AMOUNT}, {"role": "user", "content": follow_up}]
    turns.append({"role": "assistant", "content": json.dumps(ticket, ensure_ascii=False)})
    return turns, ticket


def records(rng: random.Random, per_intent: int, shifted: bool) -> list[dict]:
    out, seen = [], set()
    for intent in INTENTS:
        made = tries = 0
        while made < per_intent:
            tries += 1
            if tries > 50 * per_intent:
                raise RuntimeError(f"{intent}: too few distinct messages for {per_intent} records")
            turns, _ = compose(intent, rng, shifted)
            key = turns[1]["content"].lower()
            if key in seen:
                continue
            seen.add(key)
            out.append({"messages": turns})
            made += 1
    rng.shuffle(out)
    return out


def schema() -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Kestrel support ticket",
        "type": "object",
        "additionalProperties": False,
        "required": ["intent", "product", "amount", "currency", "urgency", "reference", "summary"],
        "properties": {
            "intent": {"enum": list(INTENTS)},
            "product": {"enum": list(PRODUCTS)},
            "amount": {"type": ["number", "null"], "minimum": 0},
            "currency": {"enum": [*CURRENCIES, None]},
            "urgency": {"enum": ["low", "medium", "high"]},
            "reference": {"type": ["string", "null"], "pattern": "^(KST-[A-Z0-9]{6}|card ending [0-9]{4})$"},
            "summary": {"type": "string", "minLength": 10, "maxLength": 200},
        },
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/tickets"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    write_jsonl(args.out / "tickets.jsonl", records(rng, PER_INTENT, shifted=False))
    write_jsonl(args.out / "shifted.jsonl", records(rng, SHIFTED_PER_INTENT, shifted=True))
    (args.out / "schema.json").write_text(json.dumps(schema(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
