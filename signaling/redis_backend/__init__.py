"""The Redis backend: lobbies and sessions in Redis, shared by every lobby instance using it.

Several ``netplay-lobby`` processes (``--workers N``, or instances on several machines behind
one URL) given the same ``--redis-url`` serve the same lobbies: a code hosted on one is joined
on another, quick-matches meet, signals reach members connected elsewhere, and a client whose
instance died resumes its session on any other within the resume grace.

Keys (all under ``prefix``, ``netplay:`` by default; each expires unless refreshed)
    ``peer:<id>``        a session: name, resume token, lobby, instance, grace deadline (JSON)
    ``token:<token>``    resume token -> peer id
    ``lobby:<code>``     a lobby with its members (JSON)
    ``buf:<id>``         signals held for a peer that is away (list)
    ``lobbies``          every open code (sorted set, by creation)
    ``game:<game>``      public codes of one game; ``qmv:<game>`` bumps on each change to one
    ``suspended``        peers in their resume grace, by deadline (sorted set)
    ``handover``         lobbies whose dropped host may hand the role on, by when (sorted set)
    ``inst:<id>``        an instance's heartbeat; ``instances`` and ``inst_peers:<id>`` list them

Channels
    ``peer:<id>``        frames for one peer: the instance it is attached to subscribes
    ``inst:<id>``        control messages for one instance (barriers, evictions, reclaims)

Modules: ``store`` (the records as stored, the Lua scripts, a transaction), ``node`` (this
instance's link to Redis: pub/sub, subscriptions, heartbeat, health), ``backend`` (the lobby
rules over the records: :class:`RedisBackend`).

Every change is one optimistic transaction (WATCH the keys read, then MULTI/EXEC): it writes the
new state and publishes the frames it causes in the same EXEC, so every peer sees events in
commit order, and concurrent joins or quick-matches on any instances retry instead of
overfilling a lobby. A frame published to a peer nobody subscribes (away, or its instance died)
is held in ``buf:<id>`` when it is a signal, as :class:`~signaling.memory.MemoryBackend` does.
Each transaction ends with a barrier published to this instance, and the request returns once
the barrier came back, so its reply and its events for local peers were delivered by then.
"""

from __future__ import annotations

from .backend import RedisBackend

__all__ = ["RedisBackend"]
