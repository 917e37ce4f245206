"""A local simulator of Workato's Genie Headless API, for tests and demos.

`GenieSimulator` serves the runtime API on loopback: conversations, SSE turns with replay
(``Last-Event-ID``), persisted-event paging, skill confirmations on the same stream,
runtime-connection pauses, uploads, and deterministic fault injection (stream faults per SSE
connection, HTTP faults per route). Tests script the genie with `Turn` and its steps.

Example::

    import re
    from genie_async.testing import Confirm, GenieSimulator, Say, Skill, StreamFault, Turn

    async def test_pto() -> None:
        async with GenieSimulator(ping_interval=0.05) as sim:
            sim.on_message(
                "How much PTO do I have?",
                Turn(Say("Checking…"), Skill("Get PTO balance"), Say("You have **12** days.")),
            )
            sim.on_message(re.compile(r"^submit"), Turn(Confirm("Submit Time Off Request")))
            sim.next_turn(Turn(Say("Hi"), faults=[StreamFault("abort", after_events=1)]))
            sim.fail("send", 503, retry_after="1")   # the next send gets a 503 first
            # client = GenieClient(base_url=sim.url, genie_id=sim.genie_id,
            #                      api_key=sim.api_key, user_id=sim.user_id)
            ...
            assert sim.requests("send")[0].status == 503

The same simulator serves the Developer API stubs used by `genie_async.admin` (genie
start/stop, genie clients, IAM user lookup) with ``sim.developer_token``; their route names
for `GenieSimulator.fail` and ``sim.log`` are in `ADMIN_ROUTES`.

`OlbrainSimulator` stands in for Olbrain's agent API (the second backend): conversational
sessions, workflow runs with test hooks, uploads, signed output URLs and fault injection.

`VirtualClock` is a fake clock for retry-policy tests.
"""

from ._admin_routes import ADMIN_ROUTES
from ._clock import SimClock, VirtualClock
from ._faults import ROUTES, HttpFault, StreamFault
from ._model import SimConversation, SimEvent, SimMessage, SimRun
from ._olbrain import OlbrainSimulator
from ._olbrain_model import (
    OlbrainMessage,
    OlbrainRequest,
    OlbrainRun,
    OlbrainSession,
    OlbrainUpload,
)
from ._records import ApprovalRecord, RequestRecord, UploadRecord
from ._scenario import Confirm, ConnectAuth, Emit, MessageMatcher, Say, Skill, Step, Turn, Wait
from ._simulator import GenieSimulator

__all__ = [
    "ADMIN_ROUTES",
    "ROUTES",
    "ApprovalRecord",
    "Confirm",
    "ConnectAuth",
    "Emit",
    "GenieSimulator",
    "HttpFault",
    "MessageMatcher",
    "OlbrainMessage",
    "OlbrainRequest",
    "OlbrainRun",
    "OlbrainSession",
    "OlbrainSimulator",
    "OlbrainUpload",
    "RequestRecord",
    "Say",
    "SimClock",
    "SimConversation",
    "SimEvent",
    "SimMessage",
    "SimRun",
    "Skill",
    "Step",
    "StreamFault",
    "Turn",
    "UploadRecord",
    "VirtualClock",
    "Wait",
]
