"""Never executed: type-checked with `mypy --strict` to pin what users see of the API.

If a public signature changes in a way that breaks this file, users' code breaks too.
"""

from __future__ import annotations

import aiohttp

import genie_async
from genie_async import (
    AgentMessage,
    Approve,
    AuthRequest,
    ConversationInfo,
    Decline,
    EventStream,
    GenieClient,
    GenieError,
    Message,
    Page,
    RefreshingTokenProvider,
    Reject,
    Reply,
    RetryPolicy,
    RunHandle,
    SkillConfirmationRequired,
    StreamCursor,
    Timeouts,
    TokenProvider,
    UnknownEvent,
    UploadedFile,
)
from genie_async.admin import AdminClient, GenieClientCredentials, GenieInfo, IamUser
from genie_async.events import GenieEvent
from genie_async.testing import GenieSimulator, Say, Turn


async def confirm(event: SkillConfirmationRequired) -> Approve | Reject:
    return Approve() if event.skill_parameters else Reject("no parameters")


async def on_auth(request: AuthRequest) -> Decline | None:
    return None if request.link else Decline("no link")


async def token() -> str:
    return "access-token"


async def usage(session: aiohttp.ClientSession) -> None:
    client = GenieClient(
        "gin-1",
        data_center="us",
        api_key="k" * 64,
        user_id="user",
        timeouts=Timeouts(stall=120),
        retry=RetryPolicy(wait_budget=120),
        session=session,
    )
    oauth: GenieClient = GenieClient("gin-1", base_url="https://x", token_provider=token)

    async def refreshing(*, force_refresh: bool = False) -> str:
        return "fresh" if force_refresh else "cached"

    providers: list[TokenProvider] = [token, refreshing]
    explicit: RefreshingTokenProvider = refreshing
    for provider in (*providers, explicit):
        GenieClient("gin-1", base_url="https://x", token_provider=provider)
    async with client:
        other: GenieClient = client.as_user("someone-else")
        conversation = await other.create_conversation()
        stream: EventStream = conversation.send(
            "hi", on_skill_confirmation=confirm, on_auth_required=on_auth
        )
        async with stream:
            async for event in stream:
                match event:
                    case AgentMessage():
                        text: str = event.text
                    case UnknownEvent(type=kind):
                        text = kind
                    case _:
                        text = event.type
                print(text)
            cursor: StreamCursor = stream.cursor
            saved: str = cursor.to_json()
        resumed: EventStream = conversation.resume(StreamCursor.from_json(saved))
        await resumed.aclose()
        reply: Reply = await conversation.ask("again")
        events: list[GenieEvent] = reply.events
        handle: RunHandle = await conversation.send("later", stream=False)
        run_id: str | None = handle.genie_run_id
        info: ConversationInfo = await conversation.info()
        title: str | None = info.display_topic
        page: Page[Message] = await conversation.message_page(limit=10)
        uploaded: UploadedFile = await conversation.upload(b"bytes", filename="a.txt")
        async for message in conversation.messages():
            content: str = message.content
        try:
            await conversation.approve_skill("call_1")
        except genie_async.ConflictError as exc:
            status: int = exc.status
            hint: str | None = exc.hint
            request_id: str | None = exc.request_id
        except GenieError:
            pass
    await oauth.close()
    print(events, run_id, title, page, uploaded, content, status, hint, request_id)


async def admin_usage() -> None:
    async with AdminClient(token="wrkaus-token", data_center="us") as admin:
        genie: GenieInfo = await admin.get_genie("gin-1")
        started: bool = genie.active
        users: list[IamUser] = await admin.find_users("ana@example.com")
        created: GenieClientCredentials = await admin.create_genie_client("portal")
        key: str | None = created.api_key.reveal() if created.api_key else None
        await admin.attach_client("gin-1", created.client_id)
        print(started, [user.status for user in users], key is not None)


async def testing_usage() -> None:
    async with GenieSimulator() as sim:
        sim.on_message("hi", Turn(Say("hello")))
        url: str = sim.url
        print(url)
