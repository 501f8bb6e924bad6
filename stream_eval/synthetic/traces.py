"""Realistic synthetic LLM traffic, labelled with the checks each trace is built to fail.

The labels are the oracle of the integration tests and the demo: they come from
how a trace was made, not from running the checks.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

PROMPT_VERSIONS = {
    "support-rag": ["v7", "v8"],
    "chat": ["v3"],
    "extract-json": ["v2"],
    "code-assistant": ["v5", "v6"],
}
MODEL = "gpt-4o-mini"
MODEL_VERSIONS = ["gpt-4o-mini-2024-07-18", "gpt-4o-mini-2025-04-01"]

DOCS = [
    (
        "kb-billing-12",
        "The Pro plan costs 24 dollars per seat per month when billed annually. "
        "Monthly billing costs 29 dollars per seat. Invoices are issued on the first day of each "
        "billing period and can be downloaded from the Billing page by workspace owners. Refunds "
        "are available within 14 days of a charge for annual plans only.",
    ),
    (
        "kb-storage-03",
        "Every Pro workspace includes 50 gigabytes of storage per seat, pooled "
        "across the workspace. Files larger than 5 gigabytes must be uploaded with the desktop "
        "client. When a workspace exceeds its pooled storage, uploads are paused until files are "
        "deleted or extra storage is purchased in blocks of 100 gigabytes.",
    ),
    (
        "kb-sso-07",
        "Single sign-on with SAML is available on the Enterprise plan. Administrators "
        "configure the identity provider metadata under Settings, Security. Once enforced, members "
        "must sign in through the identity provider, and password logins are disabled for the "
        "whole workspace, including guests invited by email.",
    ),
    (
        "kb-export-21",
        "Workspace owners can export all data as a zip archive from Settings, "
        "Export. Exports include documents, comments and version history, and are prepared in the "
        "background. A download link is emailed when the archive is ready and stays valid for "
        "seven days. Exports of large workspaces can take several hours.",
    ),
]
GROUNDED = {
    "kb-billing-12": [
        "The Pro plan costs 24 dollars per seat per month when billed annually [kb-billing-12].",
        "Monthly billing costs 29 dollars per seat [kb-billing-12].",
        "Refunds are available within 14 days of a charge for annual plans [kb-billing-12].",
    ],
    "kb-storage-03": [
        "Each Pro workspace includes 50 gigabytes of storage per seat, pooled across the "
        "workspace [kb-storage-03].",
        "Uploads are paused when the workspace exceeds its pooled storage [kb-storage-03].",
        "Extra storage is purchased in blocks of 100 gigabytes [kb-storage-03].",
    ],
    "kb-sso-07": [
        "Single sign-on with SAML is available on the Enterprise plan [kb-sso-07].",
        "Administrators configure the identity provider metadata under Settings, Security "
        "[kb-sso-07].",
        "Once enforced, password logins are disabled for the whole workspace [kb-sso-07].",
    ],
    "kb-export-21": [
        "Workspace owners can export all data as a zip archive from Settings, Export "
        "[kb-export-21].",
        "A download link is emailed when the archive is ready and stays valid for seven days "
        "[kb-export-21].",
        "Exports of large workspaces can take several hours [kb-export-21].",
    ],
}
UNGROUNDED = [
    "Our headquarters moved to Lisbon after the merger with a logistics company.",
    "Customers on legacy contracts receive quarterly webinars about tax regulations.",
    "The mobile application supports offline translation for seventeen regional dialects.",
    "Premium members get complimentary airport lounge access during business travel.",
]
QUESTIONS = {
    "kb-billing-12": "How much does the Pro plan cost per seat, and can I get a refund?",
    "kb-storage-03": "How much storage does a Pro workspace get and what happens when it is full?",
    "kb-sso-07": "Can we enforce SAML single sign-on for everyone in our workspace?",
    "kb-export-21": "How do I export everything from our workspace and how long does it take?",
}
CHAT = [
    (
        "Write a two-line poem about autumn.",
        "Amber leaves drift down on quiet streets,\nthe year exhales in gold and slows its beats.",
    ),
    (
        "What's a good name for a grey cat?",
        "Some good names for a grey cat are Ash, Smokey, Pebble, Misty or Earl Grey.",
    ),
    (
        "Summarise the plot of Hamlet in one sentence.",
        "Prince Hamlet feigns madness while "
        "seeking revenge on his uncle Claudius, and the tragedy ends with nearly everyone dead.",
    ),
]
REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "I cannot assist with creating malware or anything designed to harm systems.",
    "I\u2019m unable to help with that, as it would involve sharing private information.",
]
PII_SNIPPETS = [
    "You can reach our agent at jane.doe@mailbox.org for follow-up.",
    "Call the customer back on +1 415 555 0134 to confirm.",
    "The card on file is 4111 1111 1111 1111, expiring next year.",
]
CODE = [
    (
        "Reverse a list in Python.",
        "Use slicing: `items[::-1]` returns a reversed copy, and "
        "`items.reverse()` reverses the list in place.",
    ),
    (
        "How do I read a file line by line in Go?",
        "Open the file with os.Open, wrap it in "
        "bufio.NewScanner and loop with scanner.Scan(), reading scanner.Text() for each line.",
    ),
]


@dataclass(slots=True)
class SyntheticTrace:
    trace: dict[str, Any]
    fails: frozenset[str] = field(default_factory=frozenset)  # check names built to fail


def _messages(role: str, text: str) -> list[dict[str, Any]]:
    return [{"role": role, "parts": [{"type": "text", "content": text}]}]


class TraceFactory:
    """Deterministic for a seed and start time: the same seed makes the same traffic.

    ``start_ts`` defaults to two hours before the current hour: synthetic traffic is
    recent, as live traffic is (ingest refuses event times far from the message time).
    """

    def __init__(
        self,
        seed: int = 7,
        start_ts: float | None = None,
        max_step_s: float = 0.05,
        sessions: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.ts = start_ts if start_ts is not None else time.time() // 3600 * 3600 - 7200
        self.max_step_s = max_step_s  # traces are spaced uniformly in [0, max_step_s]
        # chat traces as turns of conversations (``session_id``), drawn from a second
        # generator: the traffic is otherwise the same as without
        self._sessions = random.Random(seed + 1) if sessions else None
        self._open: list[list[Any]] = []  # [session id, turns left]
        self._session_n = 0

    def _session_id(self) -> str:
        """A chat turn's conversation: one of up to 200 open ones (each of 1 to 8 turns),
        or a new one."""
        rng = self._sessions
        assert rng is not None
        if not self._open or (len(self._open) < 200 and rng.random() < 0.3):
            self._session_n += 1
            self._open.append([f"conv-{self._session_n}", rng.randint(1, 8)])
        i = rng.randrange(len(self._open))
        s = self._open[i]
        s[1] -= 1
        if s[1] <= 0:
            self._open[i] = self._open[-1]
            self._open.pop()
        return str(s[0])

    def _base(self, route: str, question: str, answer: str) -> dict[str, Any]:
        rng = self.rng
        self.ts += rng.uniform(0.0, self.max_step_s)
        out_tokens = max(1, len(answer) // 4)
        in_tokens = 40 + len(question) // 4
        return {
            "trace_id": f"{rng.getrandbits(128):032x}",
            "span_id": f"{rng.getrandbits(64):016x}",
            "route": route,
            "timestamp": round(self.ts, 3),
            "latency_ms": round(rng.lognormvariate(6.6, 0.4), 1),
            "prompt": {"id": f"{route}-main", "version": rng.choice(PROMPT_VERSIONS[route])},
            "gen_ai": {
                "operation": {"name": "chat"},
                "provider": {"name": "openai"},
                "request": {"model": MODEL},
                "response": {"model": rng.choice(MODEL_VERSIONS), "finish_reasons": ["stop"]},
                "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens},
                "input": {"messages": _messages("user", question)},
                "output": {"messages": _messages("assistant", answer)},
            },
            "cost_usd": round(in_tokens * 0.15e-6 + out_tokens * 0.6e-6, 8),
        }

    def rag(self, defect: str = "") -> SyntheticTrace:
        rng = self.rng
        docs = rng.sample(DOCS, 2)
        main = docs[0][0]
        sentences = rng.sample(GROUNDED[main], 2)
        fails: set[str] = set()
        if defect == "ungrounded":
            sentences = rng.sample(UNGROUNDED, 3)
            sentences[0] += f" [{main}]"
            fails.add("grounding")
        elif defect == "bad_citation":
            sentences[-1] = sentences[-1].replace(f"[{main}]", "[kb-legacy-99]")
            fails.add("grounding")
        elif defect == "pii":
            sentences.append(rng.choice(PII_SNIPPETS))
            fails.add("pii")
        t = self._base("support-rag", QUESTIONS[main], " ".join(sentences))
        t["retrieval"] = {"documents": [{"id": i, "content": c} for i, c in docs]}
        return SyntheticTrace(t, frozenset(fails))

    def chat(self, defect: str = "") -> SyntheticTrace:
        q, a = self.rng.choice(CHAT)
        fails: set[str] = set()
        if defect == "refusal":
            a = self.rng.choice(REFUSALS)
            fails.add("refusal")
        elif defect == "pii":
            a = f"{a} {self.rng.choice(PII_SNIPPETS)}"
            fails.add("pii")
        t = self._base("chat", q, a)
        if self._sessions is not None:
            t["session_id"] = self._session_id()
        return SyntheticTrace(t, frozenset(fails))

    def code(self, defect: str = "") -> SyntheticTrace:
        q, a = self.rng.choice(CODE)
        fails: set[str] = set()
        if defect == "empty":
            a = "  \n "
            fails.add("empty_output")
        elif defect == "oversized":
            a = (a + " ") * (25_000 // len(a) + 1)  # above the default 20,000-char limit
            fails.add("size")
        return SyntheticTrace(self._base("code-assistant", q, a), frozenset(fails))

    def extract(self, defect: str = "") -> SyntheticTrace:
        order = self.rng.randint(10_000, 99_999)
        q = f"Extract the order number and status from: 'Order {order} shipped on Monday.'"
        a = f'{{"order_id": "{order}", "status": "shipped"}}'
        fails: set[str] = set()
        if defect == "bad_json":
            a = f'{{"order_id": "{order}", "status": shipped'
            fails.add("json")
        return SyntheticTrace(self._base("extract-json", q, a), frozenset(fails))

    def next(self) -> SyntheticTrace:
        """One trace of the realistic mix: mostly clean, with a few per cent of each defect."""
        r = self.rng.random()
        d = self.rng.random()
        if r < 0.45:
            if d < 0.06:
                return self.rag("ungrounded")
            if d < 0.09:
                return self.rag("bad_citation")
            return self.rag("pii" if d < 0.11 else "")
        if r < 0.70:
            return self.chat("refusal" if d < 0.08 else "pii" if d < 0.10 else "")
        if r < 0.85:
            return self.code("empty" if d < 0.03 else "oversized" if d < 0.04 else "")
        return self.extract("bad_json" if d < 0.05 else "")
