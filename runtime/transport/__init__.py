"""The one authenticated transport between the nodes of a swarm (and the admin CLI).

Why it looks the way it does (details and measurements in docs/transport.md):

* **CurveZMQ, identity from the key.**  Every node listens on one ROUTER socket with
  ``curve_server`` on; a ZAP handler (pyzmq's :class:`ThreadAuthenticator`) admits only the
  public keys of known peers and clients and stamps each connection with a *User-Id* equal
  to the node id that owns the key.  The sender of a frame is read from that property,
  never from anything inside the frame, so a peer cannot speak for another.
* **Everything a node receives arrives on its ROUTER, read by one I/O thread.**  Each node
  reaches each peer through one DEALER (a Curve client that checks the peer's key); peers
  answer requests and acknowledge reliable frames through *their* DEALER to us, so the
  DEALERs are never read or polled.  That lets the calling thread send on a DEALER itself,
  holding the link's lock (a mutex is the full memory barrier ZeroMQ asks for when a
  socket changes threads): no hop through a queue and a second thread on the way out,
  which measured 60-100 µs per hop on a busy two-core machine.
* **A request travels on the caller's own socket.**  Each thread that calls
  :meth:`Transport.request` gets its own DEALER to that peer; the peer answers through its
  ROUTER to that connection, and the caller reads the reply itself, as in a raw
  DEALER/ROUTER round trip.  Every reply leaves through the ROUTER, so the I/O thread
  sends it (a worker's reply through the outbox).
* **Request handlers run on worker threads**, so a slow handler never stalls the receive
  loop; ``serve(..., inline=True)`` runs a quick one on the I/O thread instead, two thread
  hops fewer.  One-way handlers run on the I/O thread and must be quick.
* **Batching under pressure.**  When a peer's socket is full (it is not keeping up),
  frames wait in a bounded backlog, and the backlog leaves as batch frames: the receiver
  then pays its per-frame costs (decryption, the identity lookup, a decode) once per
  batch rather than once per frame, which is what lets it catch up.  An idle link sends
  each frame at once, so batching never adds latency (unless the opt-in ``coalesce``
  window asks for it).  The sender's identity is cached per connection.
* **A reliable channel on top.**  ZeroMQ drops whatever is queued when a connection or a
  socket goes away, so :meth:`Transport.send_reliable` numbers frames per (peer, channel),
  the receiver acknowledges cumulatively and delivers each number once and in order, and
  the sender retransmits what is still unacknowledged.  A receiver that meets a stream it
  does not know (it restarted, or the sender did) first asks the sender where the stream
  stands, so frames a previous incarnation already delivered are not delivered again.
* **Nothing a peer sends can crash a node**: frames that do not decode, have the wrong
  shape, are too large or name an unknown channel are dropped and counted.
* **Nothing a peer sends can make a node grow without bound**: every buffer a peer can
  fill (early reliable frames, a link's backlog, unacknowledged frames, waiting requests,
  unread replies) is bounded in bytes as well as frames; what a bound refuses is counted
  per kind, and the reliable stream recovers by retransmission.
* **A refused key is dialled again.**  libzmq gives up on a connection whose key the
  peer refused; during a membership change the peer may simply not know us yet, so a
  socket monitor notices the refusal and the link dials again every second.

Where things live (one concept per private module, pykka style; see docs/transport.md):
``_wire`` frames, constants and the one batching loop; ``_auth`` peers, key checks and
the ZAP login; ``_core`` shared state and helpers; ``_counters`` counters and fault
injection; ``_links`` outbound links and backlogs; ``_stream`` the reliable stream as a
pure state machine; ``_reliable`` the transport's side of it; ``_sending`` one-way
sends; ``_requests`` and ``_serving`` request/reply; ``_receive`` the router drain;
``_loop`` the I/O thread; ``_transport`` the lifecycle; ``_client`` the CLI's client.
"""

from ._auth import Peer
from ._client import Client
from ._transport import Transport
from ._wire import RETRANSMIT_INTERVAL, Frame

__all__ = ["RETRANSMIT_INTERVAL", "Client", "Frame", "Peer", "Transport"]
