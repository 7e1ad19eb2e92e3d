"""Simulated external systems for the demo and tests: a CRM, a ticketing system, a payment provider.

They stand for what lies *outside* Charter, so they keep their own state in their own SQLite
file (never Charter's database): WAL mode, ``synchronous=FULL``, a busy timeout, and each
method in one short transaction on its own connection, so several processes (a worker that is
about to be killed, the one that resumes its runs, a test asserting on the ledger) can use one
file at once.

Billing is deliberately *not* idempotent, like many real payment APIs: every ``refund`` call
creates a new refund row, whatever key it carries. ``find_refund`` is how a caller asks
afterwards whether an effect happened; ``reconcile_refund`` asks and *fences* in one
transaction: when no refund has the key, it records a fence (the caller's fencing token) and
from then on refuses a refund with that key and a lower token, so a request from a frozen
worker that lands late is turned away. The ticketing system does honour its idempotency key.

:class:`SupportDesk` makes them an eval world (``charter.evals.World``): the default world of
eval suites, registered as the entry point ``support_desk`` (group ``charter.eval_worlds``).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

RESOURCE = "support_desk"
"""The tool resource that names the systems database (``Runtime(resources=...)``, read from
``ToolContext.resources``): :meth:`Systems.resources` gives it."""
DEFAULT_FILE = "charter-demo-systems.db"
"""The systems database a tool uses when no resource names one: in the working directory,
where a worker started on its own (``charter worker``) finds it."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (customer_id TEXT PRIMARY KEY, name TEXT NOT NULL,
    email TEXT NOT NULL, tier TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,
    item TEXT NOT NULL, amount_cents INTEGER NOT NULL, status TEXT NOT NULL,
    placed_on TEXT NOT NULL, tracking TEXT);
CREATE TABLE IF NOT EXISTS tickets (ticket_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,
    subject TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ticket_updates (update_id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE, ticket_id TEXT NOT NULL, status TEXT NOT NULL,
    note TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (refund_id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL, amount_cents INTEGER NOT NULL, reason TEXT NOT NULL,
    idempotency_key TEXT, run_id TEXT, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS refunds_by_key ON refunds (idempotency_key);
CREATE TABLE IF NOT EXISTS fences (idempotency_key TEXT PRIMARY KEY, token INTEGER NOT NULL,
    fenced_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (message_id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
    idempotency_key TEXT, run_id TEXT, sent_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kb_articles (article_id TEXT PRIMARY KEY, title TEXT NOT NULL,
    tags TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pages (url TEXT PRIMARY KEY, body TEXT NOT NULL);
"""

CUSTOMERS = [
    ("C-101", "Ann Lee", "ann.lee@example.com", "gold"),
    ("C-102", "Ben Ortiz", "ben@ortiz.example", "standard"),
    ("C-103", "Chloé Martin", "chloe.martin@example.com", "standard"),
    ("C-104", "Dev Patel", "dev.patel@example.com", "platinum"),
    ("C-105", "Emma Novak", "emma@novak.example", "standard"),
    ("C-106", "Farid Haddad", "farid@lagoon-mail.example", "gold"),
]
ORDERS = [
    ("1001", "C-101", "Espresso machine", 24900, "delivered", "2024-04-02", None),
    ("1002", "C-102", "Ceramic pour-over set", 3500, "delivered", "2024-05-06", None),
    ("1003", "C-103", "Burr grinder", 12900, "delivered", "2024-05-01", None),
    ("1004", "C-104", "Electric kettle", 5900, "delivered", "2024-03-18", None),
    ("1005", "C-104", "Milk frother", 4500, "delivered", "2024-03-18", None),
    ("1006", "C-105", "Travel mug", 2400, "delivered", "2024-02-11", None),
    ("1007", "C-105", "Coffee beans, 3-month box", 3200, "shipped", "2024-05-03",
     "DHL 0034 0434 1822; in transit, expected 2024-05-10"),
    ("1008", "C-101", "Descaling kit", 1200, "delivered", "2024-04-02", None),
    ("1009", "C-106", "Replacement burr set", 1800, "delivered", "2024-04-22", None),
    ("1010", "C-104", "Dual-boiler espresso machine", 124000, "delivered", "2024-05-04", None),
]  # fmt: skip
TICKETS = [
    ("T-2001", "C-101", "How do I descale my machine?",
     "Hi, my espresso machine shows DESCALE. How do I descale it, and how often should I?"),
    ("T-2002", "C-102", "Pour-over set arrived broken",
     "My order 1002 arrived today and the ceramic dripper is cracked in two. "
     "I'd like a refund please."),
    ("T-2003", "C-103", "Price dropped a week after I bought",
     "I bought the burr grinder (order 1003) for 129.00 and a week later it costs 109.00. "
     "Your price guarantee says you refund the difference?"),
    ("T-2004", "C-105", "Where is my order?",
     "I ordered a while ago and nothing has arrived yet. Can you check what is going on?"),
    ("T-2005", "C-104", "Kettle humming and tripping the power",
     "My kettle (order 1004) makes a humming noise and sometimes trips the breaker. "
     "Is that normal?"),
    ("T-2006", "C-106", "Invoice for my expenses",
     "Could you email me a copy of the invoice for order 1009? I need it for my expenses."),
    ("T-2007", "C-104", "Dual boiler arrived dented",
     "The dual-boiler machine (order 1010) arrived with a dented side panel; it works fine "
     "otherwise. As agreed on the phone: a partial refund of 120.00 instead of a replacement."),
]  # fmt: skip
ARTICLES = [
    ("KB-1", "Descaling your espresso machine", "descale descaling limescale cleaning",
     "Descale every 2 to 3 months, monthly with hard water. Dissolve one sachet of the "
     "descaling kit in 1 litre of water, run it through the group head and steam wand, "
     "then rinse with two full tanks of fresh water."),
    ("KB-2", "Refunds for damaged or faulty items", "refund damaged broken cracked faulty",
     "Items damaged on arrival are refunded in full without a return. Partial refunds for "
     "cosmetic damage may be agreed with the customer. Refunds reach the card in 3-5 days."),
    ("KB-3", "Price guarantee", "price guarantee difference refund drop",
     "If the price of an item drops within 14 days of delivery we refund the difference."),
    ("KB-4", "Tracking your order", "tracking shipping delivery order arrived",
     "Orders ship within 2 working days. The tracking number is in the shipping email and "
     "on the order; most parcels arrive 3-5 working days after shipping."),
    ("KB-5", "Adjusting your burr grinder", "grinder burr grind size calibration",
     "Turn the collar one step finer at a time; replace the burrs every 500 kg of beans."),
    ("KB-6", "Invoices and receipts", "invoice receipt vat expenses",
     "Invoices are emailed at shipping; support can email a copy to the address on file."),
]  # fmt: skip
PAGES = [
    ("https://docs.example.com/descaling",
     "Descaling guide. Descale every 2 to 3 months with one sachet of the descaling kit."),
    ("https://help.example.com/refunds",
     "Refund policy. Damaged items are refunded in full; refunds reach the card in 3-5 days."),
]  # fmt: skip
"""The simulated web: what ``fetch_url`` returns for each address."""
FLAKY_MAIL_DOMAINS = frozenset({"lagoon-mail.example"})
"""The simulated relay accepts mail for these domains, then drops the connection."""

TICKET_STATUSES = ("open", "pending", "resolved", "escalated")
_STOP = frozenset({"the", "and", "for", "how", "can", "you", "what", "with", "that", "this"})


class SystemsError(Exception):
    """A request the simulated systems refused."""


class RecordNotFound(SystemsError, LookupError):
    """No customer, order or ticket with that id."""


class RequestRejected(SystemsError, ValueError):
    """The request is well formed but not allowed (e.g. a refund above what is refundable)."""


class FencedOut(RequestRejected):
    """A refund with a fencing token below its key's fence: a stale writer, turned away."""


class Systems:
    """The CRM, ticketing and billing systems over one SQLite file at ``path``."""

    def __init__(
        self, path: str | Path, *, create: bool = True, busy_timeout_s: float = 10.0
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        if not create and not self.path.exists():
            raise SystemsError(f"no systems database at {self.path}; create and seed() it first")
        if create:
            conn = self._connect()
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
            finally:
                conn.close()

    # -- plumbing -----------------------------------------------------------------------------

    def resources(self) -> dict[str, str]:
        """The runtime's ``resources`` that point tools at this database."""
        return {RESOURCE: str(self.path)}

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One short transaction on its own connection (IMMEDIATE for writes), then close."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def seed(self) -> None:
        """Replace every table's contents with the deterministic demo data."""
        with self._tx(write=True) as conn:
            for table in ("customers", "orders", "tickets", "ticket_updates", "refunds",
                          "outbox", "kb_articles", "settings", "pages",
                          "sqlite_sequence"):  # fmt: skip
                conn.execute(f"DELETE FROM {table}")
            conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", CUSTOMERS)
            conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", ORDERS)
            conn.executemany(
                "INSERT INTO tickets VALUES (?, ?, ?, ?, 'open')", [t[:4] for t in TICKETS]
            )
            conn.executemany("INSERT INTO kb_articles VALUES (?, ?, ?, ?)", ARTICLES)
            conn.executemany("INSERT INTO pages VALUES (?, ?)", PAGES)

    @property
    def latency_s(self) -> float:
        """Billing's simulated latency per refund call, shared by every process on this file."""
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM settings WHERE name = 'latency_s'").fetchone()
        return float(row[0]) if row else 0.0

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        with self._tx(write=True) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO settings VALUES ('latency_s', ?)", (str(float(value)),)
            )

    def set_latency(self, latency_s: float) -> None:
        self.latency_s = latency_s

    def close(self) -> None:
        """Nothing to release: every method opens and closes its own connection."""

    # -- CRM ----------------------------------------------------------------------------------

    def customer(self, customer_id: str) -> dict[str, Any]:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM customers WHERE customer_id = ?", (customer_id,)
            ).fetchone()
        if row is None:
            raise RecordNotFound(f"no customer {customer_id!r}")
        return dict(row)

    def order(self, order_id: str) -> dict[str, Any]:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
            if row is None:
                raise RecordNotFound(f"no order {order_id!r}")
            refunded = _refunded_cents(conn, order_id)
        order = dict(row)
        order["amount"] = order.pop("amount_cents") / 100
        order["refunded"] = refunded / 100
        order["currency"] = "EUR"
        return order

    # -- tickets ------------------------------------------------------------------------------

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM tickets WHERE ticket_id = ?", (ticket_id,)).fetchone()
            if row is None:
                raise RecordNotFound(f"no ticket {ticket_id!r}")
            notes = conn.execute(
                "SELECT status, note FROM ticket_updates WHERE ticket_id = ? ORDER BY update_id",
                (ticket_id,),
            ).fetchall()
        return {**dict(row), "notes": [dict(n) for n in notes]}

    def add_ticket(self, ticket_id: str, customer_id: str, subject: str, body: str) -> None:
        """File a ticket as a customer would (replacing one with the same id)."""
        with self._tx(write=True) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO tickets VALUES (?, ?, ?, ?, 'open')",
                (ticket_id, customer_id, subject, body),
            )

    def page(self, url: str) -> str:
        """The simulated web: the body published at ``url``."""
        with self._tx() as conn:
            row = conn.execute("SELECT body FROM pages WHERE url = ?", (url,)).fetchone()
        if row is None:
            raise RecordNotFound(f"no page at {url!r}")
        return str(row[0])

    def publish(self, url: str, body: str) -> None:
        """Put a page on the simulated web (anyone can: it is the open web)."""
        with self._tx(write=True) as conn:
            conn.execute("INSERT OR REPLACE INTO pages VALUES (?, ?)", (url, body))

    def update_ticket(
        self, ticket_id: str, status: str, note: str, idempotency_key: str
    ) -> dict[str, Any]:
        """Set a ticket's status and add a note. A repeated key changes nothing."""
        with self._tx(write=True) as conn:
            done = conn.execute(
                "SELECT * FROM ticket_updates WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if done is not None:
                return dict(done)
            if status not in TICKET_STATUSES:
                raise RequestRejected(f"status must be one of {', '.join(TICKET_STATUSES)}")
            found = conn.execute(
                "UPDATE tickets SET status = ? WHERE ticket_id = ?", (status, ticket_id)
            ).rowcount
            if not found:
                raise RecordNotFound(f"no ticket {ticket_id!r}")
            row = conn.execute(
                "INSERT INTO ticket_updates (idempotency_key, ticket_id, status, note, created_at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING *",
                (idempotency_key, ticket_id, status, note, time.time()),
            ).fetchone()
        return dict(row)

    def ticket_updates(self) -> list[dict[str, Any]]:
        """Every applied ticket update, oldest first."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM ticket_updates ORDER BY update_id").fetchall()
        return [dict(r) for r in rows]

    def send_email(
        self, to: str, subject: str, body: str, *, idempotency_key: str | None, run_id: str | None
    ) -> dict[str, Any]:
        """Hand a message to the mail relay; every call sends one message (not idempotent)."""
        with self._tx(write=True) as conn:
            row = conn.execute(
                "INSERT INTO outbox (recipient, subject, body, idempotency_key, run_id, sent_at)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING message_id, recipient, subject",
                (to, subject, body, idempotency_key, run_id, time.time()),
            ).fetchone()
        if to.rpartition("@")[2].lower() in FLAKY_MAIL_DOMAINS:
            raise ConnectionResetError("mail relay reset the connection after the DATA command")
        return dict(row)

    def emails(self) -> list[dict[str, Any]]:
        """Every message handed to the mail relay (the outbox), oldest first."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM outbox ORDER BY message_id").fetchall()
        return [dict(r) for r in rows]

    # -- billing ------------------------------------------------------------------------------

    def refund(
        self,
        order_id: str,
        amount: float,
        idempotency_key: str | None,
        run_id: str | None,
        *,
        reason: str = "",
        fencing_token: int | None = None,
    ) -> dict[str, Any]:
        """Refund ``amount`` of an order. NOT idempotent: every call is a new refund.

        Refused (:class:`FencedOut`) when the key was fenced at a higher token than this
        request's (or the request carries none). Sleeps half of ``latency_s`` before writing
        the refund and half after, so a caller killed mid-call may die after the money moved
        but before it heard so.
        """
        cents = round(amount * 100)
        if cents <= 0:
            raise RequestRejected(f"refund amount must be positive, not {amount}")
        half = self.latency_s / 2
        time.sleep(half)
        with self._tx(write=True) as conn:
            row = conn.execute(
                "SELECT amount_cents FROM orders WHERE order_id = ?", (order_id,)
            ).fetchone()
            if row is None:
                raise RecordNotFound(f"no order {order_id!r}")
            _check_fence(conn, idempotency_key, fencing_token)
            remainder = row[0] - _refunded_cents(conn, order_id)
            if cents > remainder:
                raise RequestRejected(
                    f"refund of {cents / 100:.2f} exceeds the refundable remainder"
                    f" {remainder / 100:.2f} of order {order_id}"
                )
            status = "refunded" if cents == remainder else "partially_refunded"
            conn.execute("UPDATE orders SET status = ? WHERE order_id = ?", (status, order_id))
            refund = conn.execute(
                "INSERT INTO refunds (order_id, amount_cents, reason, idempotency_key, run_id,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                (order_id, cents, reason, idempotency_key, run_id, time.time()),
            ).fetchone()
        time.sleep(half)
        return _refund_dict(refund)

    def find_refund(self, idempotency_key: str) -> dict[str, Any] | None:
        """The first refund made with ``idempotency_key``, or None: for reconciliation."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM refunds WHERE idempotency_key = ? ORDER BY refund_id LIMIT 1",
                (idempotency_key,),
            ).fetchone()
        return None if row is None else _refund_dict(row)

    def reconcile_refund(self, idempotency_key: str, fencing_token: int) -> dict[str, Any] | None:
        """Check and fence, in one transaction: the refund made with the key, or None after
        fencing the key at ``fencing_token`` (a later refund with a lower token is refused)."""
        with self._tx(write=True) as conn:
            row = conn.execute(
                "SELECT * FROM refunds WHERE idempotency_key = ? ORDER BY refund_id LIMIT 1",
                (idempotency_key,),
            ).fetchone()
            if row is not None:
                return _refund_dict(row)
            conn.execute(
                "INSERT INTO fences VALUES (?, ?, ?) ON CONFLICT (idempotency_key) DO UPDATE"
                " SET token = max(token, excluded.token), fenced_at = excluded.fenced_at",
                (idempotency_key, fencing_token, time.time()),
            )
        return None

    def refunds(self) -> list[dict[str, Any]]:
        """The whole refund ledger, oldest first."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM refunds ORDER BY refund_id").fetchall()
        return [_refund_dict(r) for r in rows]

    def ledger_counts(self) -> dict[str, int]:
        """{idempotency key: number of refund rows}; exactly-once means every value is 1."""
        return dict(Counter(str(r["idempotency_key"]) for r in self.refunds()))

    # -- knowledge base -----------------------------------------------------------------------

    def kb_search(self, query: str, limit: int = 3) -> list[dict[str, Any]]:
        """Articles scored by query words found in the title (x3), tags (x2) and body."""
        terms = [_stem(w) for w in _words(query) if len(w) > 2 and w not in _STOP]
        with self._tx() as conn:
            articles = conn.execute("SELECT * FROM kb_articles ORDER BY article_id").fetchall()
        hits = []
        for a in articles:
            fields = ((3, a["title"]), (2, a["tags"]), (1, a["body"]))
            stems = [(weight, Counter(_stem(w) for w in _words(text))) for weight, text in fields]
            score = sum(weight * counts[t] for t in terms for weight, counts in stems)
            if score > 0:
                snippet = a["body"] if len(a["body"]) <= 160 else a["body"][:159] + "…"
                hits.append(
                    {"article_id": a["article_id"], "title": a["title"], "snippet": snippet,
                     "score": score}
                )  # fmt: skip
        hits.sort(key=lambda h: (-h["score"], h["article_id"]))
        return hits[:limit]


def _check_fence(conn: sqlite3.Connection, key: str | None, token: int | None) -> None:
    fence = conn.execute("SELECT token FROM fences WHERE idempotency_key = ?", (key,)).fetchone()
    if fence is not None and (token is None or token < fence[0]):
        raise FencedOut(
            f"refund with key {key} refused: fencing token {token} is below the key's fence"
            f" {fence[0]} (a newer attempt owns this call)"
        )


def _refunded_cents(conn: sqlite3.Connection, order_id: str) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(amount_cents), 0) FROM refunds WHERE order_id = ?", (order_id,)
    ).fetchone()
    return int(row[0])


def _refund_dict(row: sqlite3.Row) -> dict[str, Any]:
    refund = dict(row)
    refund["refund_id"] = f"re_{refund['refund_id']:06d}"
    refund["amount"] = refund.pop("amount_cents") / 100
    refund["currency"] = "EUR"
    return refund


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _stem(word: str) -> str:
    return word[:6]


# -- the support desk as an eval world (charter.evals.WorldKind) --------------------------------


class _Fixture(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TicketState(_Fixture):
    ticket_id: str
    customer_id: str
    subject: str
    body: str


class PageState(_Fixture):
    url: str
    body: str


class SystemsState(_Fixture):
    """An eval case's ``state:``: what it changes in the freshly seeded systems before the run."""

    tickets: tuple[TicketState, ...] = ()
    pages: tuple[PageState, ...] = ()
    billing_latency_s: float = Field(0.0, ge=0)
    """An injected fault: billing's latency per refund call (taken away by ``heal``)."""


class RefundState(_Fixture):
    order_id: str | None = None
    amount: float | None = None


class FinalState(_Fixture):
    """An eval case's ``expect.final_state:``: the systems after the run (only what is given
    is checked)."""

    refunds: tuple[RefundState, ...] | None = None
    """Every refund in billing's ledger, in order (given fields compared)."""
    ticket_status: dict[str, str] = {}
    emails: int | None = Field(None, ge=0)
    """Messages in the mail relay's outbox."""


class SupportDesk:
    """The demo's support desk as an eval world (the suites' default, ``support_desk``): one
    :class:`Systems` file per run of a case, named :data:`DEFAULT_FILE` in the run's directory
    so that a ``charter worker`` started there (a killed-worker case) finds it by name."""

    state_model = SystemsState
    final_state_model = FinalState

    def __init__(self, systems: Systems) -> None:
        self.systems = systems

    @classmethod
    def create(cls, where: Path, state: SystemsState) -> SupportDesk:
        systems = Systems(where / DEFAULT_FILE)
        systems.seed()
        for t in state.tickets:
            systems.add_ticket(t.ticket_id, t.customer_id, t.subject, t.body)
        for p in state.pages:
            systems.publish(p.url, p.body)
        systems.latency_s = state.billing_latency_s
        return cls(systems)

    def resources(self) -> dict[str, str]:
        return self.systems.resources()

    def heal(self) -> None:
        self.systems.latency_s = 0.0

    def duplicates(self) -> list[str]:
        """Refunds in billing's ledger and messages in the outbox that share a key."""
        ledger = self.systems.ledger_counts().items()
        refunds = {k: n for k, n in ledger if n > 1 and k != "None"}
        mails = Counter(
            str(m["idempotency_key"]) for m in self.systems.emails() if m["idempotency_key"]
        )
        problems = [f"billing holds {n} refunds for key {k}" for k, n in sorted(refunds.items())]
        problems += [
            f"the outbox holds {n} messages for key {k}" for k, n in mails.items() if n > 1
        ]
        return problems

    def check(self, final_state: FinalState) -> list[str]:
        final, systems = final_state, self.systems
        problems = []
        if final.refunds is not None:
            ledger = systems.refunds()
            got = [(r["order_id"], r["amount"]) for r in ledger]
            ok = len(ledger) == len(final.refunds) and all(
                (w.order_id is None or w.order_id == r["order_id"])
                and (w.amount is None or abs(w.amount - r["amount"]) < 1e-9)
                for w, r in zip(final.refunds, ledger, strict=False)
            )
            if not ok:
                want = [(w.order_id, w.amount) for w in final.refunds]
                problems.append(f"billing's ledger holds {got}, expected {want}")
        for ticket_id, status in final.ticket_status.items():
            found = systems.ticket(ticket_id)["status"]
            if found != status:
                problems.append(f"ticket {ticket_id} is {found}, expected {status}")
        emails = len(systems.emails())
        if final.emails is not None and emails != final.emails:
            problems.append(f"the outbox holds {emails} messages, expected {final.emails}")
        return problems


if TYPE_CHECKING:  # the support desk is an eval world (checked by mypy, not at import)
    from charter.evals import WorldKind

    _KIND: WorldKind = SupportDesk
