"""What every data source shares: the subject it looks for, streaming reads and batched deletes.

Reads for the access package go through ``stream_batches``: one streamed cursor on its own connection
(server-side on PostgreSQL), so the job can commit progress meanwhile and memory stays flat whatever
the row count. Rows travel as tuples in the inventory's field order, a batch at a time (``Source.batches``):
building a dict per row cost more than reading it.

``Source`` is the interface every connector satisfies (a ``typing.Protocol``: the unit tests check each
one); ``BaseSource`` and ``TableSource`` are the shared implementations the connectors build on. What a
connector has beyond it (Stripe's customer lookups and resumable erasure, the account's corrections) is
reached through its own class, ``app.sources.BY_KEY`` being typed per key. Plan and report items are
``TypedDict``s: they are stored as JSON in the request's ``plan`` and ``report`` exactly as built here.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Select,
    Table,
    delete,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy import true as sa_true
from sqlalchemy.orm import QueryableAttribute

from app.extensions import db
from app.models_base import UTCDateTime, utcnow
from app.platform.models import Account
from app.sources.inventory import Category

CHUNK = 2000
# Rows per deletion transaction: 50k keeps each under about 0.1 s on PostgreSQL and 0.35 s on SQLite
# (measured at 2M rows) while paying for 2.5x fewer commits than 20k (PostgreSQL, 1M rows: 1.03 s -> 0.73 s).
DELETE_BATCH = 50000
# The time a deletion batch aims at: each batch is sized from the last one's (at most DELETE_BATCH rows),
# so a slow layout or a loaded machine makes batches smaller rather than transactions longer.
DELETE_BATCH_SECONDS = 0.25
# The first batch's rows, before any batch was timed (it then doubles while under DELETE_BATCH_SECONDS):
# 50k at once took 1.27 s on SQLite under load (the writer beside it waited as long).
DELETE_FIRST_BATCH = 1000

# A piecewise count's first piece and largest piece (rows): counting costs a fraction of deleting.
COUNT_FIRST_PIECE = 10000
COUNT_MAX_PIECE = 1_000_000

Progress = Callable[[int], None]
NOT_FOUND = "We found none linked to the identifiers of this request."


class StripeStep(TypedDict):
    """One erasure step at Stripe and whether Stripe confirmed it for every id (``StripeSource._verify``)."""

    step: str  # subscriptions_cancelled / payment_methods_detached / customer_deleted
    count: int
    verified: bool


class PlanItem(TypedDict):
    """One line of the deletion plan (the dry run staff approve; stored in ``DsrRequest.plan["items"]``)."""

    category: str
    source: str  # the connector's key, "none" for a category we hold nothing identifiable in
    action: str  # delete / anonymise / keep
    count: int
    reason: str
    unchecked: NotRequired[bool]  # Stripe could not be reached: not a decision, the job checks again


class ResultItem(TypedDict):
    """What a source found and did in an erasure (``Source.result``; kept in the job's resumable state).

    ``action``: deleted, anonymised, kept, not_found, not_checked. Stripe's deletion carries the
    confirmed ``steps``; its kept records their ``ids`` and ``retained``."""

    category: str
    source: str
    action: str
    count: int | None
    reason: str
    steps: NotRequired[list[StripeStep]]
    ids: NotRequired[list[str]]
    retained: NotRequired[bool]


def normalise_email(email: str | None) -> str:
    return (email or "").strip().lower()


@dataclass
class Subject:
    """The person a request is about, as found on the platform from verified identifiers only
    (``app.sources.resolve``): their addresses, at most one account, its Stripe customer and any Stripe
    customer staff verified."""

    email: str
    account_id: int | None = None
    account_email: str | None = None
    stripe_customer_id: str | None = None
    extra_emails: set[str] = field(default_factory=set)
    stripe_customer_ids: set[str] = field(default_factory=set)
    # Records withheld by default (third parties' data, Art. 15(4) GDPR) that an officer released for this
    # request, by category name.
    released: dict[str, set[int]] = field(default_factory=dict)

    @property
    def emails(self) -> set[str]:
        found = {self.email} | self.extra_emails
        if self.account_email:
            found.add(normalise_email(self.account_email))
        return {e for e in found if e}

    @property
    def customer_ids(self) -> list[str]:
        found = [self.stripe_customer_id] if self.stripe_customer_id else []
        return found + sorted(c for c in self.stripe_customer_ids if c and c not in found)


def find_subject(email: str | None, account_id: int | None = None) -> Subject:
    """Find the account by an email (case-insensitive), or by a remembered account id. Requests go
    through ``app.sources.resolve.resolve_subject`` (verified identifiers only); this is for the
    retention sweep, which starts from the account itself."""
    email = normalise_email(email)
    acct = None
    if email:
        acct = db.session.execute(
            select(Account).where(func.lower(Account.email) == email).order_by(Account.id).limit(1)
        ).scalar_one_or_none()
    if acct is None and account_id is not None:
        acct = db.session.get(Account, account_id)
    if acct is None:
        return Subject(email=email, account_id=account_id)
    return Subject(
        email=email,
        account_id=acct.id,
        account_email=acct.email,
        stripe_customer_id=acct.stripe_customer_id,
    )


def platform_engine() -> Engine:
    return db.engines["platform"]


# PostgreSQL's planner assumes a random page read costs 4 sequential ones (spinning disks). On SSD or
# cached data it is nearer 1: with 4, reading a subject's rows of an interleaved usage log in id order was
# planned as the primary key walked from the table's start, filtering on the account (every row of the
# table read for each subject: 375 ms against 90 ms through ``(account_id, id)`` at 1M rows, and the
# whole table at 20M); so was each deletion batch's pick. Set for the platform reads and deletions only
# (``SET LOCAL``: it ends with their transaction).
RANDOM_PAGE_COST = 1.1


def plan_for_cached_data(conn: Connection) -> None:
    """On PostgreSQL, plan this transaction's statements with ``RANDOM_PAGE_COST``."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL random_page_cost = {RANDOM_PAGE_COST}")


def stream_batches(
    stmt: Select[*tuple[Any, ...]], key: QueryableAttribute[Any], chunk: int = CHUNK
) -> Iterator[Sequence[Sequence[Any]]]:
    """Yield the rows of ``stmt``, ordered by ``key``, as lists of at most ``chunk`` tuple-like rows.

    One streamed cursor on its own connection (a server-side cursor on PostgreSQL; SQLite steps its
    cursor lazily), fetched ``chunk`` rows at a time, so memory is constant. SQLite runs in WAL mode
    (``create_app``), so this long read does not block the job's progress writes on its other connection.

    On PostgreSQL the fetching runs a batch ahead in a thread of its own (``_read_ahead``): the server
    produces the next batch while this thread encodes and compresses the last one (a 200k-row export
    waited 1.0 s of its 5.7 s on FETCH, with one of the two cores idle meanwhile).
    """
    engine = platform_engine()
    if engine.dialect.name == "postgresql":
        yield from _read_ahead(lambda: _fetch(engine, stmt, key, chunk))
    else:
        yield from _fetch(engine, stmt, key, chunk)


def _fetch(
    engine: Engine, stmt: Select[*tuple[Any, ...]], key: QueryableAttribute[Any], chunk: int
) -> Iterator[Sequence[Sequence[Any]]]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # In a UTC session psycopg returns each timestamptz as an aware UTC datetime, which is
            # what UTCDateTime's per-value conversion would make of it: read those columns as plain
            # timestamptz (its per-value call cost more than the driver's parsing). SET LOCAL ends
            # with this read-only transaction.
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            plan_for_cached_data(conn)
            stmt = stmt.with_only_columns(
                *[
                    type_coerce(c, DateTime(timezone=True)).label(c.name) if isinstance(c.type, UTCDateTime) else c
                    for c in stmt.selected_columns
                ]
            )
        result = conn.execution_options(yield_per=chunk, stream_results=True).execute(stmt.order_by(key))
        yield from result.partitions()


_DONE = object()


def _read_ahead(
    make: Callable[[], Iterator[Sequence[Sequence[Any]]]], depth: int = 2
) -> Iterator[Sequence[Sequence[Any]]]:
    """Iterate ``make()`` in a daemon thread at most ``depth`` batches ahead (memory stays bounded);
    its error is raised here; closing this generator early stops the thread and closes its cursor."""
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        batches = make()
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            put(exc)
        finally:
            close = getattr(batches, "close", None)
            if close:
                close()

    thread = threading.Thread(target=run, name="stream-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = ahead.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def count_rows(stmt: Select[*tuple[Any, ...]]) -> int:
    with platform_engine().connect() as conn:
        return int(conn.execute(select(func.count()).select_from(stmt.subquery())).scalar_one())


def count_in_pieces(
    id_col: QueryableAttribute[int],
    where: ColumnElement[bool],
    *,
    seconds: float = DELETE_BATCH_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """How many rows match ``where``, counted in ``id_col`` order in pieces, each its own statement
    and transaction, sized by the last piece's time (``seconds`` each, at most doubling, at most
    ``COUNT_MAX_PIECE`` rows), like the deletion batches.

    For the usage log: one ``count(*)`` of a 1M-row subject of a 20M-row PostgreSQL log took 3.38 s
    (an index-only scan visiting the heap for every row, the visibility map cleared by the day's
    deletions), one transaction holding its snapshot that long. The pieces add up to the same count
    when nothing changes meanwhile; the erasure's re-check takes rows committed during it anyway.
    """
    engine = platform_engine()
    size, total, low = COUNT_FIRST_PIECE, 0, None
    while True:
        bounds = [where] if low is None else [where, id_col > low]
        piece = select(id_col.label("id")).where(*bounds).order_by(id_col).limit(size).subquery()
        started = clock()
        with engine.connect() as conn:
            plan_for_cached_data(conn)
            row = conn.execute(select(func.count(), func.max(piece.c.id))).one()
        elapsed = clock() - started
        found, last = int(row[0]), row[1]
        total += found
        if found < size:
            return total
        low = last
        size = _next_size(size, elapsed, seconds, COUNT_MAX_PIECE)


def delete_in_batches(
    table: Table,
    id_col: QueryableAttribute[int],
    where: ColumnElement[bool],
    batch: int = DELETE_BATCH,
    on_batch: Progress | None = None,
    *,
    key: QueryableAttribute[Any] | None = None,
    seconds: float = DELETE_BATCH_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
    recheck: bool = True,
) -> int:
    """Delete matching rows at most ``batch`` per transaction; returns how many this call deleted.

    Each batch deletes the next matching rows in ``key`` order (default ``id_col``; the retention sweep
    walks ``created_at``, the index its condition uses): the next ``size`` of them from where the last
    batch stopped, picked through that index and deleted by their row address (``ctid`` on PostgreSQL,
    the id on SQLite). No batch re-walks what an earlier one deleted (PostgreSQL keeps deleted rows'
    index entries until vacuum), and no statement reads the rest of the table: there is no min/max read
    up front (``max(id)`` of the sweep's rows was a backward scan of every row newer than them, 3 s at
    20M rows) and no unbounded DELETE at the end (it re-walked every dead entry the batches left: 2.4 s
    for a 1M-row subject).

    On PostgreSQL each batch plans with ``RANDOM_PAGE_COST``: with the default the pick of a subject's
    rows walked the primary key from the table's start filtering on the account (1.4 s for 50k rows of a
    subject among 4M) rather than the ``(account_id, id)`` index (50 ms).

    ``size`` starts at ``DELETE_FIRST_BATCH`` (or ``batch``, if smaller) and follows the time the last
    batch took (``seconds`` each, never more than ``batch`` rows, at most doubling), so no transaction
    runs long whatever the layout or the load.

    A second pass takes what appeared meanwhile: it re-checks each range the first pass walked (rows
    committed late behind the walk), below its first row and above its last (new rows), in the same
    bounded batches; each re-check walks only its own piece of a range's dead entries. ``recheck=False``
    skips that pass: the retention sweep's (its rows are a year old, so one committed behind the walk is
    a backdated insert, and the next day's run takes it; on PostgreSQL the re-check visits every dead
    entry once more, about half the sweep's time). An erasure always re-checks.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    walk = key if key is not None else id_col
    engine = platform_engine()
    size, total = min(batch, DELETE_FIRST_BATCH), 0

    def take(low: Any, high: Any) -> tuple[int, Any, Any]:
        """One batch: delete the next ``size`` matching rows with ``low <= key <= high`` (None: open);
        returns how many and the first and last keys taken."""
        nonlocal size, total
        bounds = [where]
        if low is not None:
            bounds.append(walk >= low)
        if high is not None:
            bounds.append(walk <= high)
        started = clock()
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                plan_for_cached_data(conn)
                picked: Select[Any] = select(literal_column("ctid")).where(*bounds).order_by(walk).limit(size)
                gone = (
                    delete(table)
                    .where(literal_column("ctid") == func.any(func.array(picked.scalar_subquery())), where)
                    .returning(walk)
                    .cte("gone")
                )
                found = conn.execute(select(func.count(), func.min(gone.c[walk.key]), func.max(gone.c[walk.key]))).one()
                deleted, first, last = int(found[0]), found[1], found[2]
            else:
                picked = select(id_col).where(*bounds).order_by(walk).limit(size)
                taken: list[Any] = list(conn.execute(delete(table).where(id_col.in_(picked)).returning(walk)).scalars())
                deleted, first, last = len(taken), min(taken, default=None), max(taken, default=None)
        elapsed = clock() - started
        asked = size
        size = _next_size(asked, elapsed, seconds, batch)
        if deleted:
            total += deleted
            if on_batch:
                on_batch(total)
        return deleted, first, last

    # First pass: walk upwards from the lowest matching key; each batch's keys and rows are remembered.
    spans: list[tuple[Any, Any, int]] = []
    low = None
    while True:
        asked = size
        deleted, first, last = take(low, None)
        if deleted:
            spans.append((first, last, deleted))
            low = last
        if deleted < asked:
            break
    if not recheck:
        return total

    def pieces(low: Any, high: Any, rows: int) -> Iterator[tuple[Any, Any]]:
        """``[low, high]`` (a batch's keys, ``rows`` dead entries) cut into pieces of about ``size``
        entries each, ``size`` read afresh for each piece (ids and times are cut evenly)."""
        while rows > size and _cuttable(low, high):
            cut = _between(low, high, size / rows)
            yield low, cut
            rows -= size
            low = cut
        yield low, high

    def recheck_range(low: Any, high: Any) -> None:
        while True:
            asked = size
            deleted, _first, last = take(low, high)
            if deleted < asked:
                return
            low = last

    # Second pass: below the first batch, each batch's range again (in pieces: a re-check walks its
    # range's dead entries whatever it finds, 7.5 s for one 50k-row range of a 20M-row table on
    # PostgreSQL, so it is cut to what fits in ``seconds``), each gap between batches, and above the
    # last one. (Nothing found: the first pass's one read was that check.)
    edge = None
    for first, last, rows in spans:
        recheck_range(edge, first)
        for piece_low, piece_high in pieces(first, last, rows):
            recheck_range(piece_low, piece_high)
        edge = last
    if spans:
        recheck_range(edge, None)
    return total


def _next_size(size: int, elapsed: float, seconds: float, cap: int) -> int:
    """The next batch's or piece's rows after ``size`` took ``elapsed``: what fits in ``seconds`` at that
    pace, at most doubling, at most ``cap``, at least one."""
    return max(1, min(cap, size * 2, int(size * seconds / elapsed) if elapsed > 0 else cap))


def _cuttable(low: Any, high: Any) -> bool:
    """Whether ``_between`` can cut ``[low, high]``: two ints or two datetimes, ``high`` above ``low``."""
    if isinstance(low, int) and isinstance(high, int):
        return high - low > 1
    return isinstance(low, datetime) and isinstance(high, datetime) and high > low


def _between(low: Any, high: Any, fraction: float) -> Any:
    """The key ``fraction`` of the way from ``low`` to ``high`` (an int or a datetime)."""
    if isinstance(low, int):
        return low + max(1, int((high - low) * fraction))
    return low + (high - low) * fraction


@runtime_checkable
class Source(Protocol):
    """A data source: find, summarise, stream, plan, erase. Every connector in ``app.sources`` satisfies
    this (most through ``BaseSource``; ``tests/unit/test_source_protocol.py`` checks each one)."""

    key: str  # the connector's key (``Category.source`` in the inventory)
    category: Category  # the inventory category it holds

    def configured(self) -> bool:
        """Whether this installation can reach the source at all (Stripe needs a key)."""
        ...

    def count(self, subject: Subject) -> int:
        """How many of the subject's records it holds (quick: a count in SQL)."""
        ...

    def records(self, subject: Subject, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        """The subject's records as dicts of the inventory's fields."""
        ...

    def batches(self, subject: Subject) -> Iterator[Sequence[Sequence[Any]]]:
        """The subject's records for the access package: lists of tuples in ``category.fields`` order."""
        ...

    def plan(self, subject: Subject) -> list[PlanItem]:
        """The deletion plan's lines for this source (read-only)."""
        ...

    def plan_item(self, action: str, count: int, reason: str, *, unchecked: bool | None = None) -> PlanItem: ...

    def erase(
        self, subject: Subject, progress: Progress | None = None, *, batch: int = DELETE_BATCH
    ) -> list[ResultItem]:
        """Erase the subject's records; returns what was found and done (``result``). ``batch``: rows per
        deletion transaction, for the sources that delete in batches."""
        ...

    def result(self, action: str, count: int | None, reason: str | None = None) -> ResultItem:
        """One report item of this source (``reason`` defaults from the action and the inventory)."""
        ...

    def withheld(self, subject: Subject) -> list[dict[str, Any]]:
        """Records found for the subject but left out of the package (another person's data): each with
        ``category``, ``id``, ``reason`` and the fields that say what it is without its content."""
        ...

    def retention_days(self) -> int | None: ...

    def retention_cutoff(self, now: datetime | None = None) -> datetime | None:
        """The oldest row time still within the retention period (None: the period is not per row)."""
        ...


class BaseSource:
    """What the connectors share: the defaults of ``Source`` (a connector overrides ``count``, ``erase``
    and one of ``records`` or ``batches``)."""

    key: str = ""
    category: Category

    def configured(self) -> bool:
        return True

    def count(self, subject: Subject) -> int:
        raise NotImplementedError

    def records(self, subject: Subject, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        """The subject's rows as dicts of the inventory's fields."""
        fields = self.category.fields
        for batch in self.batches(subject):
            for row in batch:
                yield dict(zip(fields, row, strict=True))

    def batches(self, subject: Subject) -> Iterator[Sequence[Sequence[Any]]]:
        """The subject's rows for the access package: lists of tuples in ``category.fields`` order.

        A source overrides this or ``records`` (this default batches ``records``; the default
        ``records`` reads this). Table sources stream their select, whose columns are the fields.
        """
        if type(self).records is BaseSource.records:
            raise NotImplementedError(f"{type(self).__name__} implements neither records() nor batches()")
        fields = self.category.fields
        batch: list[tuple[Any, ...]] = []
        for row in self.records(subject):
            batch.append(tuple(row.get(f) for f in fields))
            if len(batch) >= CHUNK:
                yield batch
                batch = []
        if batch:
            yield batch

    def plan(self, subject: Subject) -> list[PlanItem]:
        n = self.count(subject)
        return [self.plan_item(self.category.erasure if n else "delete", n, self.category.erasure_reason)]

    def plan_item(self, action: str, count: int, reason: str, *, unchecked: bool | None = None) -> PlanItem:
        item: PlanItem = {
            "category": self.category.name,
            "source": self.key,
            "action": action,
            "count": count,
            "reason": reason,
        }
        if unchecked is not None:
            item["unchecked"] = unchecked
        return item

    def erase(
        self, subject: Subject, progress: Progress | None = None, *, batch: int = DELETE_BATCH
    ) -> list[ResultItem]:
        """Erase the subject's rows; returns what was found and done, as report items (``result``)."""
        raise NotImplementedError

    def result(
        self,
        action: str,
        count: int | None,
        reason: str | None = None,
        *,
        steps: list[StripeStep] | None = None,
        ids: list[str] | None = None,
        retained: bool | None = None,
    ) -> ResultItem:
        """One report item: ``action`` is what happened (deleted, anonymised, kept, not_found,
        not_checked); the report a subject reads is rendered from these items alone. The optional keys
        are present only when given."""
        if reason is None:
            reason = NOT_FOUND if action == "not_found" else self.category.erasure_reason
        item: ResultItem = {
            "category": self.category.name,
            "source": self.key,
            "action": action,
            "count": count,
            "reason": reason,
        }
        if steps is not None:
            item["steps"] = steps
        if ids is not None:
            item["ids"] = ids
        if retained is not None:
            item["retained"] = retained
        return item

    def export_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Allowlist: only the inventory's fields leave."""
        return {f: row.get(f) for f in self.category.fields}

    def withheld(self, subject: Subject) -> list[dict[str, Any]]:
        """Records found for the subject but left out of the package (another person's data), each with
        ``id``, the fields that say what it is without its content, and ``reason``; none by default."""
        return []

    # Retention at export: rows older than the inventory's period never leave, whether or not the sweep
    # has run. ``retention_config`` names a config value that overrides the inventory's days (the sweep
    # reads the same method, so both agree).
    retention_config: str = ""

    def retention_days(self) -> int | None:
        from flask import current_app

        configured = current_app.config.get(self.retention_config) if self.retention_config else None
        return int(configured) if configured else self.category.retention_days

    def retention_cutoff(self, now: datetime | None = None) -> datetime | None:
        """The oldest row time still within the retention period (None: the period is not per row)."""
        days = self.retention_days()
        if not (self.category.retention_field and days):
            return None
        return (now or utcnow()) - timedelta(days=days)


class TableSource(BaseSource):
    """A source that is one platform table whose columns include the inventory's fields.

    Only those fields are selected (so, for one, an API key's hash never leaves the platform), and
    rows stream in primary-key order. ``by_account``: nothing is held without a platform account.
    """

    model: Any
    by_account = True

    def _where(self, subject: Subject) -> ColumnElement[bool]:
        raise NotImplementedError

    def _select(self, subject: Subject) -> Select[*tuple[Any, ...]]:
        return select(*[getattr(self.model, f) for f in self.category.fields]).where(self._where(subject))

    def _retained_now(self) -> ColumnElement[bool]:
        """The export's retention filter on this table (true where the period is not per row)."""
        cutoff = self.retention_cutoff()
        if cutoff is None:
            return sa_true()
        return getattr(self.model, self.category.retention_field) >= cutoff

    def _export_select(self, subject: Subject) -> Select[*tuple[Any, ...]]:
        return self._select(subject).where(self._retained_now())

    def batches(self, subject: Subject) -> Iterator[Sequence[Sequence[Any]]]:
        if self.by_account and subject.account_id is None:
            return
        yield from stream_batches(self._export_select(subject), self.model.id)
