"""The Olbrain backend: one library and one set of habits for agents on Olbrain's agent API.

::

    from genie_async.olbrain import OlbrainClient

    async with OlbrainClient(api_key="ak_…") as client:
        agent = client.agent("agt_…")
        conversation = agent.conversation()              # conversational agents
        async with conversation.send("Order #4421 placed") as stream:
            async for event in stream:                    # AgentMessage, then TurnFinished
                ...
        run = await client.agent("agt_…").trigger({"csv_file": "fi_…"})   # workflow agents
        async for record in run.watch():                  # each status change
            print(record.status)

Errors are the shared tree of :mod:`genie_async.errors` (``SessionNotFoundError``,
``InvalidStateTransitionError``, …), each with the server's ``request_id`` and a hint; retries
follow the same :class:`~genie_async.RetryPolicy`. See ``docs/pages/olbrain.md`` for what
differs from the genie backend.
"""

from ._client import Agent, OlbrainClient
from ._conversation import Conversation, Reply, TurnStream
from ._events import OlbrainEvent, TurnFinished
from ._models import (
    Approval,
    ApprovalResult,
    Message,
    OutputFile,
    RunRecord,
    RunStatus,
    Session,
    TokenUsage,
    UploadedFile,
)
from ._runs import TRANSITIONS, Run, RunAction, RunWatch
from ._uploads import UploadInput

__all__ = [
    "TRANSITIONS",
    "Agent",
    "Approval",
    "ApprovalResult",
    "Conversation",
    "Message",
    "OlbrainClient",
    "OlbrainEvent",
    "OutputFile",
    "Reply",
    "Run",
    "RunAction",
    "RunRecord",
    "RunStatus",
    "RunWatch",
    "Session",
    "TokenUsage",
    "TurnFinished",
    "TurnStream",
    "UploadInput",
    "UploadedFile",
]

# Show the public path in reprs and tracebacks; not for msgspec Structs, which resolve their
# annotations through __module__.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("genie_async.olbrain._"):
        import msgspec as _msgspec

        if not issubclass(_obj, _msgspec.Struct):
            _obj.__module__ = "genie_async.olbrain"
del _name, _obj
