"""What goes to which webhook, and what to do after each attempt.

Pure: subscriptions come in parsed, events as models, the time and the
random jitter as arguments; nothing here sends, stores or reads a clock.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, get_args
from urllib.parse import urlsplit

from leadpipe_common.events import (
    Contact, Event, Grade, LeadAssigned, LeadErased, LeadHandedOver, LeadMerged, LeadQueued, LeadReengaged, LeadRouted,
    LeadSlaBreached, LeadStageChanged, Score, ScoreReason,
)

#: The event types a subscription may ask for. ``lead.stage_changed`` is delivered for sales' dispositions only;
#: ``lead.erased`` passes every filter (``wants``).
DELIVERABLE = ("lead.routed", "lead.sla_breached", "lead.queued", "lead.assigned", "lead.handed_over",
               "lead.stage_changed", "lead.reengaged", "lead.merged", "lead.erased")
#: The stages a disposition moves a lead to: what a CRM mirrors.
SALES_STAGES = frozenset({"accepted", "rejected", "contacted", "qualified", "won", "lost"})
FILTER_KEYS = ("team", "owner", "grade", "source")
GRADES = get_args(Grade)
SUBSCRIPTION_KEYS = ("id", "url", "secrets", "events", "filter", "retry_hours", "contact")
#: The person's own details an event may carry (``lead.routed``'s ``contact``): what ``contact:`` chooses from.
CONTACT_FIELDS = tuple(Contact.model_fields)
#: The longest a failing delivery may be retried (30 days), for every subscription and the service's default.
LONGEST_RETRY_HOURS = 24 * 30


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    secrets: tuple[str, ...]
    events: frozenset[str]
    #: Each key's allowed values; a key absent matches anything.
    filter: Mapping[str, frozenset[str]]
    #: How long a failing delivery is retried (None: DELIVERY_RETRY_HOURS).
    retry_hours: float | None = None
    #: The contact fields this receiver is sent (None: all of them); the others are left out of every body.
    contact: frozenset[str] | None = None


def parse_subscriptions(raw: Mapping[str, Any], *, allow_private: bool) -> dict[str, Subscription]:
    """The ``subscriptions:`` list of the file, checked; raises ValueError naming the bad entry."""
    if not isinstance(raw, Mapping):
        raise ValueError("expected a mapping with subscriptions: at the top level")
    unknown = set(raw) - {"subscriptions"}
    if unknown:  # a misspelt subscriptions: would leave every webhook out without a word
        raise ValueError(f"unknown keys {sorted(map(str, unknown))} (known: subscriptions)")
    items = raw.get("subscriptions") or []
    if not isinstance(items, list):
        raise ValueError("subscriptions: expected a list")
    subs: dict[str, Subscription] = {}
    for i, item in enumerate(items):
        sub = parse_subscription(item, f"subscriptions[{i}]", allow_private=allow_private)
        if sub.id in subs:
            raise ValueError(f"subscriptions[{i}].id: {sub.id!r} is used twice")
        subs[sub.id] = sub
    return subs


def parse_subscription(item: Any, where: str, *, allow_private: bool, stored: bool = False) -> Subscription:
    """``item`` checked; raises ValueError naming ``where``. ``stored``: one the API took before grades were
    checked, read back as it was (a grade filter that is no grade matched nothing then, and matches nothing now,
    rather than stopping delivery for every subscription until it is fixed)."""
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    unknown = set(item) - set(SUBSCRIPTION_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(map(str, unknown))} (known: {', '.join(SUBSCRIPTION_KEYS)})")
    sub_id = item.get("id")
    if not isinstance(sub_id, str) or not re.match(r"^[A-Za-z0-9_-]{1,100}$", sub_id):
        raise ValueError(f"{where}.id: letters, digits, - and _ (1-100)")
    url = item.get("url")
    if not isinstance(url, str):
        raise ValueError(f"{where}.url: expected a URL")
    problem = target_problem(url, allow_private=allow_private)
    if problem:
        raise ValueError(f"{where}.url: {problem}")
    secrets = item.get("secrets")
    if not isinstance(secrets, list) or not secrets:
        raise ValueError(f"{where}.secrets: list at least one whsec_... secret")
    for i, secret in enumerate(secrets):
        if not _valid_secret(secret):  # said without any of it: a refusal is logged
            raise ValueError(f"{where}.secrets[{i}]: not a whsec_<base64> secret")
    events = item.get("events")
    if (not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events)
            or not set(events) <= set(DELIVERABLE)):
        raise ValueError(f"{where}.events: a list of {', '.join(DELIVERABLE)}")
    flt = item.get("filter") or {}
    if not isinstance(flt, Mapping):
        raise ValueError(f"{where}.filter: keys among {', '.join(FILTER_KEYS)}")
    unknown = set(flt) - set(FILTER_KEYS)
    if unknown:
        raise ValueError(f"{where}.filter: unknown keys {sorted(map(str, unknown))} (known: {', '.join(FILTER_KEYS)})")
    for key, value in flt.items():
        if any(_CONTROL.search(str(v)) for v in (value if isinstance(value, list) else [value])):
            raise ValueError(f"{where}.filter.{key}: a value holds a control character")
    grades = flt.get("grade")
    if not stored and (wrong := [g for g in (grades if isinstance(grades, list) else [grades])
                                 if grades is not None and g not in GRADES]):
        hint = "; grades are upper case" if all(str(g).upper() in GRADES for g in wrong) else ""
        raise ValueError(f"{where}.filter.grade: {', '.join(map(repr, wrong))} is no grade a lead gets "
                         f"(grades: {', '.join(GRADES)}{hint}), so it would match nothing")
    retry_hours = item.get("retry_hours")
    # At most what the admin API allows: a window past what a datetime can add (1e9, .inf) failed every attempt
    # of the subscription's (OverflowError), which was never recorded and so sent again at every lease.
    if retry_hours is not None and (isinstance(retry_hours, bool) or not isinstance(retry_hours, int | float)
                                    or not 0 < retry_hours <= LONGEST_RETRY_HOURS):
        raise ValueError(f"{where}.retry_hours: a number of hours above 0, at most {LONGEST_RETRY_HOURS:g}")
    contact = item.get("contact")
    if contact is not None and (not isinstance(contact, list) or not all(isinstance(c, str) for c in contact)):
        raise ValueError(f"{where}.contact: a list of the contact fields the receiver is sent, among "
                         f"{', '.join(CONTACT_FIELDS)} (left out: all of them)")
    if unknown := set(contact or ()) - set(CONTACT_FIELDS):
        raise ValueError(f"{where}.contact: unknown fields {sorted(unknown)} (known: {', '.join(CONTACT_FIELDS)})")
    return Subscription(id=sub_id, url=url, secrets=tuple(secrets), events=frozenset(events),
                        filter={k: frozenset(map(str, v if isinstance(v, list) else [v])) for k, v in flt.items()},
                        retry_hours=float(retry_hours) if retry_hours is not None else None,
                        contact=frozenset(contact) if contact is not None else None)


def new_secret(random_bytes: bytes) -> str:
    """A Standard Webhooks secret made of ``random_bytes`` (24 or more, from ``os.urandom``)."""
    if len(random_bytes) < 24:
        raise ValueError("a webhook secret needs at least 24 random bytes")
    return "whsec_" + base64.b64encode(random_bytes).decode()


def live_secrets(secrets: Sequence[tuple[str, datetime | None]], now: datetime) -> tuple[str, ...]:
    """The secrets that still sign at ``now``: those without an expiry, and those whose expiry is ahead."""
    return tuple(secret for secret, expires_at in secrets if expires_at is None or expires_at > now)


def _valid_secret(secret: Any) -> bool:
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        return False
    encoded = secret.removeprefix("whsec_")
    try:
        # Padding optional, as the Standard Webhooks libraries read it (32 bytes are often written as 43 letters).
        return len(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)) >= 16
    except ValueError:
        return False


#: ASCII control characters: no URL or filter value holds one (a tab is dropped by some URL parsers and refused by
#: others; Postgres refuses a NUL in text).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: A host written as four numbers: an IPv4 address, or a mistake (leading zeros read as octal by some resolvers).
_DOTTED = re.compile(r"^[0-9]+(\.[0-9]+){3}$")


def target_problem(url: str, *, allow_private: bool) -> str | None:
    """Why a webhook target is refused (None: it is not): not http(s); a literal address that is link-local, a
    cloud metadata service's or multicast (``address_problem``), or (unless allowed) private, loopback or
    otherwise non-public; or (unless allowed) this machine by name. (A name is judged by what it resolves to when
    a delivery is sent: ``delivery.network``.) Said without the URL, which may hold a token or a password (a
    refused file's is written to the log)."""
    if _CONTROL.search(url):
        return "the URL holds a control character"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (read for its checks: a port that is no number, or out of range)
    except ValueError as exc:
        return f"not a URL: {_unparsed(str(exc))}"
    if parts.scheme not in ("http", "https"):
        return f"not an http(s) URL (its scheme: {parts.scheme or 'none'})"
    if not parts.hostname:
        return "not an http(s) URL (no host)"
    if _DOTTED.match(parts.hostname):
        try:
            ipaddress.IPv4Address(parts.hostname)
        except ValueError:
            return f"{parts.hostname} is not an IPv4 address (four numbers 0-255, no leading zeros)"
    host = parts.hostname
    if not allow_private and (host.lower() in ("localhost", "localhost.localdomain") or host.endswith(".localhost")):
        return f"{host} is this machine (set DELIVERY_ALLOW_PRIVATE_TARGETS=true to allow it)"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a name: judged by what it resolves to when a delivery is sent
    problem = address_problem(address, allow_private=allow_private)
    return f"{host} is {problem}" if problem else None


def _unparsed(error: str) -> str:
    """Why urllib could not read a URL, in words of our own: its own quote the part it refused (a password taken
    for a port, a user and password whole)."""
    if error.startswith("Port out of range"):
        return "its port is not from 0 to 65535"
    if error.startswith("Port could not be cast"):
        return "what follows the host's colon is no port number (a password goes before the @)"
    if "NFKC" in error:
        return "its user, password or host holds characters that change under NFKC normalization"
    if "bracket" in error.lower() or "IPv6" in error:
        return "a host in brackets is no IPv6 address"
    return "urllib cannot read it"


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (well-known and local-use), the
#: IPv4-translated form (SIIT, ``::ffff:0:a.b.c.d``: Python sees no IPv4 in it) and the deprecated
#: IPv4-compatible form.
_CARRIERS = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96"))
#: Cloud metadata services outside the link-local ranges: AWS's over IPv6 (Nitro) and Alibaba Cloud's.
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))
#: IPv6 site-local (deprecated, RFC 3879): private, yet "global" to Python.
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def _carried(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries (mapped, translated, 6to4, Teredo, NAT64, IPv4-compatible)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    carried = [v4 for v4 in (address.ipv4_mapped, address.sixtofour, *(address.teredo or ())) if v4]
    if any(address in network for network in _CARRIERS):
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return carried


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool) -> str | None:
    """Why no webhook is sent to ``address`` (None: one may be). Never to a link-local address, a cloud metadata
    service or a multicast group, nor to an IPv6 address that carries such an IPv4 one: what
    DELIVERY_ALLOW_PRIVATE_TARGETS opens is private and loopback ranges (a receiver beside you), not the
    credentials a metadata service hands whoever asks. Otherwise, unless allowed, only a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(int(address))  # fe80::1%eth0: judged without its zone
    for judged in (address, *_carried(address)):
        if judged.is_link_local or judged in _METADATA:
            return "a link-local or cloud metadata address (refused even with DELIVERY_ALLOW_PRIVATE_TARGETS=true)"
        if judged.is_multicast:
            return "a multicast address (refused even with DELIVERY_ALLOW_PRIVATE_TARGETS=true)"
    if not allow_private and not is_public(address):
        return ("not a public address (private, loopback or otherwise reserved; set "
                "DELIVERY_ALLOW_PRIVATE_TARGETS=true to allow it)")
    return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global unicast, and so is every IPv4 address an IPv6 one carries (mapped, translated, 6to4, Teredo, NAT64,
    IPv4-compatible): Python judges some of those by their IPv6 prefix alone (``64:ff9b::a9fe:a9fe`` is
    "global", yet a NAT64 gateway takes it to 169.254.169.254), and calls multicast and site-local "global"."""
    return all(a.is_global and not a.is_multicast for a in (address, *_carried(address))) and (
        address not in _SITE_LOCAL)


def facts_of(event: Event) -> tuple[dict[str, str | None], ...]:
    """What filters test: the team, owner and grade an event names, and the lead's first-touch source; a filter
    passes an event when it holds for one of these, as a whole. A hand-over names two: the team and holder the
    lead left and those it went to (grade and source on both), so a receiver following a team (or a rep) hears
    that a lead left it, or it would hold the lead as its own for ever. Each side is judged whole: ana of emea
    handing a lead to ben of dach is not news of emea's ben, who is on neither side.

    A missed deadline names two as well: the holder who missed it and the one it sent the lead to (a rep, or a
    team's queue, ``queue:<team>``), whom a receiver following the overflow team it went to hears of too. A
    breach from before v2 does not say the next holder's team: that side passes no team filter (the lead may
    have gone along an overflow to any team), an owner filter alone still.

    A merge names two leads, each with its holder and grade: the one merged away, whose receiver must hear that
    the lead it holds is closed (routing refuses its dispositions from then on), and the survivor, whose
    receiver hears that its lead took in another. The event carries the first-touch source of the lead merged
    away alone: the survivor's side passes no source filter. A merge from before v2 names no holder and no
    grade: it passes a filter on source alone, as it always did, none on team, owner or grade (it is not
    guessed whose it was).

    The grade is the one routing holds the lead at (its hand-off's), which every lifecycle step names, on
    ``lead.routed`` and ``lead.reengaged`` too (``held_grade``), not the one a re-engagement's touch scored: a touch
    scored below it (a consent withdrawn, its intent decayed) goes to the receiver that gets the lead's later steps.
    One from before lead.routed v6 or lead.reengaged v3 does not say it, and is judged by the score's grade, as it
    always was: the hand-off's too, but after a touch scored the lead below it (not guessed).

    Each side also names the lead it is of (``lead``, never a filter key): a merge's survivor side is the
    survivor's, every other side the event's own lead. A subscription that took that lead passes its grade key
    (``wants``)."""
    source = getattr(getattr(event, "attribution", None), "utm_source", None)
    lead = event.lead_id
    if isinstance(event, LeadHandedOver):
        return ({"team": event.from_team, "owner": event.from_owner_id, "grade": event.grade, "source": source,
                 "lead": lead},
                {"team": event.team, "owner": event.owner_id, "grade": event.grade, "source": source, "lead": lead})
    if isinstance(event, LeadSlaBreached):
        return ({"team": event.team, "owner": event.owner_id, "grade": event.grade, "source": source, "lead": lead},
                {"team": event.next_team, "owner": event.next_owner_id, "grade": event.grade, "source": source,
                 "lead": lead})
    if isinstance(event, LeadMerged):
        return ({"team": event.team, "owner": event.owner_id, "grade": event.grade, "source": source, "lead": lead},
                {"team": event.survivor_team, "owner": event.survivor_owner_id, "grade": event.survivor_grade,
                 "source": None, "lead": event.survivor_id})
    team = owner = grade = None
    if isinstance(event, LeadRouted):
        team, owner, grade = event.assignment.team, event.assignment.owner_id, event.held_grade or event.score.grade
    elif isinstance(event, LeadReengaged):
        team, owner, grade = event.team, event.owner_id, event.held_grade or event.grade
    elif isinstance(event, LeadStageChanged | LeadAssigned):
        team, owner, grade = event.team, event.owner_id, event.grade
    elif isinstance(event, LeadQueued):
        team, grade = event.team, event.grade
    return ({"team": team, "owner": owner, "grade": grade, "source": source, "lead": lead},)


def deliverable(event: Event) -> bool:
    if isinstance(event, LeadStageChanged):
        return event.to_stage in SALES_STAGES
    return isinstance(event, LeadRouted | LeadSlaBreached | LeadQueued | LeadAssigned | LeadHandedOver | LeadReengaged
                      | LeadMerged | LeadErased)


def wants(sub: Subscription, event: Event, following: Collection[uuid.UUID] = ()) -> bool:
    """Whether ``sub`` is sent ``event``: it asks for its type, and the event passes its filter (``facts_of``), the
    grade key passed by a side of a lead among ``following``, those ``sub`` took (``Following``). An erasure
    passes any filter: it names no team, holder or grade (only the lead), and a receiver that holds the lead must
    hear of it whoever holds the lead now, or it keeps the person; one that does not ignores it."""
    if event.type not in sub.events or not deliverable(event):
        return False
    if isinstance(event, LeadErased):
        return True
    return any(_passes(sub, facts, following) for facts in facts_of(event))


def _passes(sub: Subscription, facts: Mapping[str, Any], following: Collection[uuid.UUID]) -> bool:
    return all(facts.get(key) in allowed or (key == "grade" and facts["lead"] in following)
               for key, allowed in sub.filter.items())


# -- the leads a grade filter took ----------------------------------------------------------


def remembers(sub: Subscription) -> bool:
    """Whether ``sub`` remembers the leads it takes (a lead is taken by being sent its ``lead.routed``): it filters
    on grade. A lead a touch raises above that grade is still held by the rep its CRM knows (a re-engagement keeps
    the holder), and the CRM must hear of its acceptance and its win. Its team and owner keys have no memory, on
    purpose: they follow the holder, and a CRM following a team hears that a lead left it, then nothing more."""
    return "grade" in sub.filter and LeadRouted.type in sub.events


def may_follow(sub: Subscription, event: Event) -> set[uuid.UUID]:
    """The leads of ``event`` whose being taken by ``sub`` decides whether it is sent: those of a side that passes
    every key of its filter but the grade, when no side passes them all. Empty for a lead's first routing (its first
    hand-off, no touch): nothing can have taken the lead before it. So what is looked up for a batch is only what
    may change an answer."""
    if not remembers(sub) or event.type not in sub.events or not deliverable(event) or isinstance(event, LeadErased):
        return set()
    if isinstance(event, LeadRouted) and event.handoff_seq == 1 and event.touch is None:
        return set()
    sides = facts_of(event)
    if any(_passes(sub, facts, ()) for facts in sides):
        return set()
    return {facts["lead"] for facts in sides if _passes(sub, facts, (facts["lead"],))}


def lets_go(event: Event) -> uuid.UUID | None:
    """The lead every subscription stops following at ``event`` (None: none): a lead sales rejected. It is sent that
    step as one it took; then it is nobody's until a touch recycles it, a new routing at that touch's grade, which a
    grade filter judges as it judges a new lead. Nothing else ends it: routing never lowers the grade it holds a lead
    at but for a recycle, and a recycle comes only after a rejection."""
    return event.lead_id if isinstance(event, LeadStageChanged) and event.to_stage == "rejected" else None


class Mark(NamedTuple):
    """Where a hand-off (a take: its lead.routed) or a rejection stands among its lead's, by routing's count and clock:
    the hand-off's number (``handoff_seq``; a rejection's, the number of the hand-off it ended; None: not said, a
    record of an older routing) and routing's time (a take's ``routed_at``, a rejection's envelope time)."""

    at: datetime
    seq: int | None = None

    def no_later_than(self, other: Mark) -> bool:
        """Whether this comes no later than ``other``: by the numbers when both say one, routing's count under the
        hand-off's lock; else by the times, which different routing processes' clocks may set seconds or minutes
        apart (routing allows them five), the fallback for records that do not say the number. The store writes the
        same rule in SQL (``store._ended``); a test on Postgres holds the two equal."""
        if self.seq is not None and other.seq is not None:
            return self.seq <= other.seq
        return self.at <= other.at

    def latest(self, other: Mark) -> Mark:
        """The later time and the higher number of the two (a number not said leaves the other's), as the store
        keeps them (``GREATEST``, which passes NULLs over)."""
        seqs = [seq for seq in (self.seq, other.seq) if seq is not None]
        return Mark(max(self.at, other.at), max(seqs) if seqs else None)


@dataclass
class Following:
    """Which leads the subscriptions that remember (``remembers``) follow while a batch is read, in its order:
    ``known``, those the store holds among what was asked (``may_follow``), each with the ``Mark`` of the hand-off
    that took it, and ``rejected``, the mark of the last rejection of those leads; then each ``lead.routed`` sent to
    one takes its lead and each rejection lets its lead go (``read``).

    Delivery reads leads.routed apart from the lifecycle, so a rejection and the ``lead.routed`` of the hand-off it
    ends come in either order. Routing numbers them: a rejection says the number of the hand-off it ended, every
    ``lead.routed`` of that hand-off (or an earlier one) says it or a lower one, and a recycle a higher one. So a
    rejection lets go the leads taken at a hand-off numbered no higher, not a recycle a subscription took before the
    rejection was read, and a ``lead.routed`` read after the rejection takes its lead only if it is numbered higher
    (a recycle), not one of the hand-off it ended, read late. Records that do not say the number (an older routing's)
    are compared by routing's times instead (``Mark.no_later_than``); the step's own ``at`` is never compared: sales
    may date it a few minutes before the hand-off it answers.

    What to store once the batch is read: the ``forgotten`` leads' rejections are noted and the rows they end go,
    then the ``taken`` pairs are added (a lead rejected and recycled within a batch is forgotten, then taken again),
    each with its mark."""

    known: dict[tuple[str, uuid.UUID], Mark]
    rejected: dict[uuid.UUID, Mark] = field(default_factory=dict)
    taken: dict[tuple[str, uuid.UUID], Mark] = field(default_factory=dict)
    forgotten: dict[uuid.UUID, Mark] = field(default_factory=dict)

    def of(self, sub: Subscription, event: Event) -> set[uuid.UUID]:
        """The leads of ``event`` that ``sub`` follows, those that decide whether it is sent (``wants``)."""
        return {lead for lead in may_follow(sub, event) if (sub.id, lead) in self.known}

    def read(self, event: Event, sent_to: Iterable[Subscription], recorded_at: datetime) -> None:
        """``event``, recorded by its producer at ``recorded_at`` (its envelope's time), was sent to ``sent_to``: a
        lead it rejects is let go, then a ``lead.routed`` takes its lead for each of them that remembers and whose
        filter it passes by itself. One sent only because the subscription follows its lead (the same hand-off told
        again, raised above its grades) continues what it took: taken anew, a recycle read before its rejection
        would outlive the rejection for a subscription its filter would not have given it to. An erasure lets its
        lead go for every subscription, as the store does once the batch is read (``_GIVE_UP_ERASED``): an event of
        the lead later in the batch is no more a follower's than one of a later batch, whichever way the batch is
        cut."""
        if isinstance(event, LeadErased):
            self.known = {pair: m for pair, m in self.known.items() if pair[1] != event.lead_id}
            self.taken = {pair: m for pair, m in self.taken.items() if pair[1] != event.lead_id}
            return
        if (lead := lets_go(event)) is not None:
            assert isinstance(event, LeadStageChanged)
            ended = Mark(recorded_at, event.handoff_seq)
            self.rejected[lead] = self.forgotten[lead] = ended.latest(self.rejected.get(lead, ended))
            self.known = {pair: m for pair, m in self.known.items() if pair[1] != lead or not m.no_later_than(ended)}
            self.taken = {pair: m for pair, m in self.taken.items() if pair[1] != lead or not m.no_later_than(ended)}
        if isinstance(event, LeadRouted):
            handoff = Mark(event.routed_at, event.handoff_seq)
            rejected = self.rejected.get(event.lead_id)
            if rejected is not None and handoff.no_later_than(rejected):
                return  # a hand-off its rejection ended, read after it
            for sub in sent_to:
                pair = (sub.id, event.lead_id)
                # Not written again for what the store holds already (the same hand-off told again).
                if remembers(sub) and wants(sub, event) and (pair not in self.known
                                                             or not handoff.no_later_than(self.known[pair])):
                    self.known[pair] = self.taken[pair] = handoff.latest(self.known.get(pair, handoff))


#: What enrichment read from a contact field, repeating it or telling it: left out with it. Each is an enrichment
#: field and the source it must have come from (None: it only ever comes from that contact field). What it
#: derives from the e-mail address (its domain, free mail or not, the company's domain) is about the company
#: and stays. (The score's reasons say themselves which contact fields they read: ``ScoreReason.reads``.)
DERIVED: Mapping[str, tuple[tuple[str, str | None], ...]] = {
    "phone": (("phone_e164", None), ("country", "phone")),
    "country": (("country", "form"),),
    "job_title": (("seniority", None), ("department", None)),
    "company": (("company_name", "form"),),
}


def withheld(sub: Subscription, event: Event) -> dict[str, set[str] | dict[str, set[int]]] | None:
    """What of ``event`` is left out of the body ``sub`` is sent (pydantic's ``exclude``): the contact fields it
    does not ask for, what enrichment read from them (``DERIVED``), and the score's reasons that tell of them
    (``telling``). None: the whole event."""
    if sub.contact is None or getattr(event, "contact", None) is None:
        return None
    left_out = set(CONTACT_FIELDS) - sub.contact
    enrichment = getattr(event, "enrichment", None)
    derived = {name for field in left_out for name, source in DERIVED.get(field, ())
               if enrichment is not None and (value := getattr(enrichment, name)) is not None
               and (source is None or value.source == source)}
    score = getattr(event, "score", None)
    reasons = telling(score.reasons, left_out) if isinstance(score, Score) else set()
    cut = {"contact": left_out, "enrichment": derived, "score": {"reasons": reasons} if reasons else {}}
    return {part: names for part, names in cut.items() if names} or None


def telling(reasons: Sequence[ScoreReason], left_out: set[str]) -> set[int]:
    """The places of the reasons that tell of a contact field ``left_out``: those whose rule read one (a reason
    names its rule, and "Decision maker" tells the seniority of a job title left out), and, while any field is
    left out, those that do not say what they read (scored before reasons said it): each may tell of any. The
    score's numbers stay: receivers route on them (though to one that knows the rules they tell what the reasons
    left out add up to: the README says so)."""
    if not left_out:
        return set()
    return {i for i, reason in enumerate(reasons) if reason.reads is None or not left_out.isdisjoint(reason.reads)}


# -- after an attempt -------------------------------------------------------------------


#: How many attempts in a row a receiver may refuse a delivery (``refused``) before it is given up, the default of
#: DELIVERY_REFUSED_ATTEMPTS: 5 to 10 minutes of backoff, which a secret rotation's reload or a receiver's bad
#: deploy rolled back fits in.
REFUSED_ATTEMPTS = 8
#: The 4xx answers that say "not now" rather than "not this" (a timeout, a conflict with what the receiver is
#: doing, too early, too many): retried for the whole window, as a 5xx is.
TRANSIENT_4XX = frozenset({408, 409, 425, 429})
#: The answers whose ``Retry-After`` is waited out, when it asks for longer than the backoff would wait.
WAITS_AS_ASKED = frozenset({429, 503})


@dataclass(frozen=True)
class Verdict:
    """``delivered``; ``retry`` at ``next_at``; ``dead`` (the window is over, or the receiver refused it:
    ``reason`` says so); ``gone`` (410: the receiver asked to stop; the subscription is disabled)."""

    outcome: str
    next_at: datetime | None = None
    #: Why it is dead, when its answer alone does not say it (its status is kept beside it).
    reason: str | None = None
    #: The attempts its receiver has refused in a row, this one included (0: this answer was no refusal): what the
    #: next attempt's ``refused_before`` is.
    refused_in_a_row: int = 0


def refused(status: int | None) -> bool:
    """Whether ``status`` refuses this message rather than tells of an outage: a 4xx other than 410 (``gone``)
    and ``TRANSIENT_4XX``, or a redirect (3xx). Sent again, it gets the same answer, and the lead's later
    deliveries wait behind it. Deliveries follow no redirect (a signed POST re-sent to wherever a receiver
    points, a private address among them, is not ours to send), so an http:// url its receiver moves to
    https://, or one missing its trailing slash, is the subscription's url to change, not an outage to wait out
    for 72 hours."""
    return (status is not None and 300 <= status < 500 and status != 410 and status not in TRANSIENT_4XX)


def redirected(status: int | None, location: str | None) -> str | None:
    """What a redirect answered to a delivery says to whoever reads its last error (None: not a redirect): the
    origin it points to, not the whole Location. A receiver's url often holds a secret in its path or query (a
    Slack or Zapier hook), and the errors are shown to every key that reads reports, while the url is an admin's
    to see: the whole Location goes with the answer's head, which only admin keys are shown."""
    if status is None or not 300 <= status < 400:
        return None
    where = ""
    if location:
        try:
            target = urlsplit(location.strip())
            origin = f"{target.scheme}://{target.hostname}" + (f":{target.port}" if target.port else "")
        except ValueError:  # a port out of range, brackets unclosed: nothing of it is said
            origin = None
        where = f" to {origin[:300]}" if origin and target.scheme and target.hostname else " elsewhere"
    return (f"redirected{where}; deliveries follow no redirect: set the subscription's url to where it points "
            "(its Location is in the last response, shown to admin keys)")


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header as seconds from ``now``: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit alone takes "²", which float() refuses
        return float(value)  # a number too large for a float is inf: past any window
    try:
        when = parsedate_to_datetime(value)
        # HTTP's asctime form and a "-0000" zone are read without a zone: HTTP dates are GMT (RFC 9110), and
        # compared with an aware moment they raised, ignored as no header.
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    except (TypeError, ValueError, OverflowError):  # an offset of 10**20 hours overflows
        return None


def after_attempt(status: int | None, retry_after: float | None, *, attempts: int, refused_before: int,
                  first_at: datetime, now: datetime, window: timedelta, jitter: float, base_s: float = 5.0,
                  cap_s: float = 3600.0, refused_attempts: int = REFUSED_ATTEMPTS,
                  refused_here: bool = False) -> Verdict:
    """What to do after attempt number ``attempts`` (1 for the first, since it was queued or redriven) got
    ``status`` (None: no answer: timeout or connection error), its retry ``window`` open since ``first_at`` (its
    first attempt), the ``refused_before`` attempts just before it refused (``Verdict.refused_in_a_row`` of the
    previous attempt; 0 for the first since it was queued or redriven). A refusal (``refused``) that makes
    ``refused_attempts`` in a row is dead: the lead's later deliveries (the rep who now holds it) wait behind it,
    and a receiver that will never take it would hold them back for the whole window. Any other answer starts
    the count again: a delivery that failed for hours (an outage) and is then refused (the receiver's bad deploy
    answering 404 for a minute) gets its ``refused_attempts`` too, not given up at its first refusal because it
    had many attempts before it. Backoff doubles from ``base_s`` up to ``cap_s``, each wait between half and all
    of it (``jitter`` in [0, 1)); a 429 or 503 with a longer ``Retry-After`` waits that long instead, up to
    ``cap_s`` (a shorter one, 0 or a date gone by, would have the receiver asked again at once, as fast as it
    answers). A wait past
    the window's end is dead, but a 429 or 503 with ``Retry-After`` waits until that end instead, for one last
    attempt: the receiver said it will take deliveries again. After a refusal the backoff doubles with the refusals
    in a row, not with the attempts: they take the same minutes whatever came before them. ``refused_here``: no
    answer, because the attempt could not be made to that url at all (it resolves to an address deliveries are
    not sent to, httpx cannot send to it): a refusal as a receiver's 4xx is, which no retry changes."""
    if status is not None and 200 <= status < 300:
        return Verdict("delivered")
    if status == 410:
        return Verdict("gone")
    in_a_row = refused_before + 1 if refused(status) or refused_here else 0
    if in_a_row >= refused_attempts:
        # The status is the last refusal's: a receiver may refuse with several (a 404, then a 401 once it is back).
        by = f"the receiver answered {status}" if status is not None else "its url cannot be sent to"
        return Verdict("dead", reason=f"refused: {by}, refusing {in_a_row} attempt{'s' if in_a_row != 1 else ''} "
                                      "in a row", refused_in_a_row=in_a_row)
    # Refusals are paced by their own count: after an outage had backed a delivery off to an hour, its refusals in a
    # row took hours, the lead's later deliveries waiting behind them, not the minutes DELIVERY_REFUSED_ATTEMPTS is.
    paced_by = in_a_row or attempts
    # The exponent is bounded first: a delivery may fail for weeks of windows, and 2.0 ** 1024 is no float.
    wait = min(cap_s, base_s * 2.0 ** min(paced_by - 1, 64)) * (0.5 + jitter / 2)
    # Waited at most as long as the backoff's longest wait: a proxy's Retry-After of a year parked the delivery,
    # and every later one of its lead, until its window ended, with nothing to send it sooner once the receiver
    # was back; asked again after the cap, a receiver still down says so again.
    asked = min(retry_after, cap_s) if retry_after is not None and status in WAITS_AS_ASKED else None
    if asked is not None:
        wait = max(wait, asked)
    # Compared in seconds: a receiver's Retry-After may be beyond any date a datetime can hold.
    left = (first_at + window - now).total_seconds()
    if wait > left:
        # Dead at once, it never got the attempt its receiver asked for; that last attempt, at the window's end
        # (nothing left of it then), is dead whatever it is told.
        if asked is not None and left > 0:
            return Verdict("retry", first_at + window, refused_in_a_row=in_a_row)
        return Verdict("dead", refused_in_a_row=in_a_row)
    return Verdict("retry", now + timedelta(seconds=wait), refused_in_a_row=in_a_row)


def switched_off(disabled: Mapping[str, str | None], from_file: Mapping[str, Subscription]) -> set[str]:
    """Which of the subscriptions a receiver's 410 switched off (``disabled``: by id, the url that answered it;
    None, not known) are off. Not a file's subscription that the file now sends elsewhere: that 410 came from
    the url it left, through a process still on the older file (a rolling deploy), and its new url is live. One
    made through the API stays off, changed or not, until it is enabled (a 410 from a url it had left never
    switched it off: ``DeliveryStore.disable``)."""
    return {sub_id for sub_id, url in disabled.items()
            if url is None or sub_id not in from_file or from_file[sub_id].url == url}


# -- retention ----------------------------------------------------------------------------


#: A retention longer than this purges nothing: no delivery finished that long ago (some 2,700 years), and a much
#: longer one could not be counted back from now at all (Postgres's dates begin in 4713 BC).
LONGEST_KEEP_DAYS = 1_000_000


def purge_after(keep_days: float) -> timedelta | None:
    """How long after it finished (delivered or dead) a delivery's body and its receiver's last answer are purged:
    ``keep_days``. None: nothing is purged (0 keeps them for ever, and so does a retention longer than any
    delivery's age, ``LONGEST_KEEP_DAYS``)."""
    if keep_days <= 0 or keep_days > LONGEST_KEEP_DAYS:  # inf too
        return None
    return timedelta(days=keep_days)
