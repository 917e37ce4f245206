// The chat page: posts each message to the app, then follows the turn over SSE.
// Every text from the genie or the user reaches the DOM through textContent (or as a Text
// node), never innerHTML: a reply cannot inject markup or script.
"use strict";

const log = document.getElementById("log");
const form = document.getElementById("composer");
const input = document.getElementById("message");
const sendButton = document.getElementById("send");
const statusLine = document.getElementById("status");
let conversationId = null;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// A small, safe subset of markdown (**bold**, *italic*, `code`, line breaks), built as
// DOM nodes. Anything else shows as the literal text it is.
function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const inline = /(\*\*[^*]+\*\*|\*[^*\s][^*]*\*|`[^`]+`)/g;
  text.split("\n").forEach((line, index) => {
    if (index > 0) fragment.append(document.createElement("br"));
    let last = 0;
    for (const match of line.matchAll(inline)) {
      fragment.append(line.slice(last, match.index)); // a string becomes a Text node
      const token = match[0];
      if (token.startsWith("**")) fragment.append(element("strong", null, token.slice(2, -2)));
      else if (token.startsWith("`")) fragment.append(element("code", null, token.slice(1, -1)));
      else fragment.append(element("em", null, token.slice(1, -1)));
      last = match.index + token.length;
    }
    fragment.append(line.slice(last));
  });
  return fragment;
}

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function scrollDown() {
  log.scrollTop = log.scrollHeight;
}

function addBubble(who, text) {
  const bubble = element("div", `bubble ${who}`);
  if (who === "genie") bubble.append(renderMarkdown(text));
  else bubble.textContent = text;
  log.append(bubble);
  scrollDown();
  return bubble;
}

function setStatus(text) {
  statusLine.hidden = !text;
  statusLine.textContent = text || "";
}

function setBusy(busy) {
  input.disabled = busy;
  sendButton.disabled = busy;
  for (const button of document.querySelectorAll(".suggestion")) button.disabled = busy;
  if (!busy) {
    setStatus("");
    input.focus();
  }
}

// --- cards -------------------------------------------------------------------------------

function card(kind, title) {
  const node = element("div", `card ${kind}`);
  node.append(element("div", "card-title", title));
  log.append(node);
  scrollDown();
  return node;
}

// A skill confirmation: the parameters, and Approve / Reject buttons that post the decision
// back to the app. A reconnect may ask again for the same call: the card is reused.
function showConfirmation(turn, data) {
  let node = turn.cards.get(data.call_id);
  if (node && node.dataset.state !== "waiting") return; // already decided here
  if (!node) {
    node = card("confirmation", `Confirm: ${data.skill || "a skill"}`);
    node.dataset.callId = data.call_id;
    turn.cards.set(data.call_id, node);
    const fields = element("dl", "fields");
    for (const parameter of data.parameters) {
      fields.append(element("dt", null, parameter.label), element("dd", null, parameter.value));
    }
    const actions = element("div", "actions");
    const approve = element("button", "approve", "Approve");
    const reject = element("button", "reject", "Reject");
    approve.type = reject.type = "button";
    approve.addEventListener("click", () => decide(turn, node, "approve"));
    reject.addEventListener("click", () => decide(turn, node, "reject"));
    actions.append(approve, reject);
    node.append(fields, actions, element("p", "card-status"));
  }
  node.dataset.state = "waiting";
  setStatus("Waiting for your confirmation…");
}

const RESOLUTIONS = {
  approved: "✓ Approved",
  rejected: "✗ Rejected",
  already_decided: "Already decided elsewhere",
};

async function decide(turn, node, decision) {
  const buttons = node.querySelectorAll(".actions button");
  const note = node.querySelector(".card-status");
  for (const button of buttons) button.disabled = true;
  note.textContent = decision === "approve" ? "Approving…" : "Rejecting…";
  try {
    const url = `/api/turns/${encodeURIComponent(turn.id)}/confirmations/` +
      encodeURIComponent(node.dataset.callId);
    const body = decision === "approve" ? { decision } : { decision, reason: "Declined in the web app" };
    const result = await postJSON(url, body);
    node.dataset.state = result.resolution;
    node.querySelector(".actions").remove();
    // The resolution recorded, which may not be the button clicked: "already_decided" when
    // it was decided elsewhere first; "rejected" by the timeout (source "timeout").
    note.textContent = RESOLUTIONS[result.resolution] || result.resolution;
    if (result.source === "timeout") note.textContent += " (no decision in time)";
    setStatus("The genie is working…");
  } catch (error) {
    note.textContent = `Could not send the decision: ${error.message}`;
    for (const button of buttons) button.disabled = false;
  }
}

// A runtime-connection pause: the auth link, opened in a new tab. The turn resumes by
// itself once the user has authorized. A fresh link (they expire) replaces the old one.
function showAuth(turn, data) {
  const key = data.attempt_id || "auth";
  let node = turn.cards.get(key);
  const connector = data.connector || "the app";
  if (!node) {
    node = card("auth", `Connect ${connector}`);
    node.append(
      element("p", null, `The genie needs access to your ${connector} account. ` +
        "Authorize it in the new tab, then come back: the answer appears here."),
      element("p", "card-status", "Waiting for authorization…"),
    );
    turn.cards.set(key, node);
    turn.authCards.push(node);
  }
  let link = node.querySelector("a.authorize");
  if (isWebLink(data.url)) {
    if (!link) {
      link = element("a", "authorize button", `Authorize ${connector}`);
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      node.querySelector(".card-status").before(link);
    }
    link.href = data.url;
  }
  setStatus(`Waiting for you to authorize ${connector}…`);
}

function isWebLink(url) {
  try {
    return ["https:", "http:"].includes(new URL(url).protocol); // never javascript: URLs
  } catch {
    return false;
  }
}

function settleAuthCards(turn, text) {
  for (const node of turn.authCards) {
    node.querySelector(".card-status").textContent = text;
    node.querySelector("a.authorize")?.remove();
  }
  turn.authCards = [];
}

function showSkill(turn, data) {
  const key = `skill:${data.call_id || data.name}`;
  let line = turn.cards.get(key);
  if (!line) {
    line = element("div", "skill");
    turn.cards.set(key, line);
    log.append(line);
  }
  const verb = { running: "running…", done: "done", failed: "failed" }[data.state] || data.state;
  line.textContent = `⚙ ${data.name || "skill"}: ${verb}`;
  line.dataset.state = data.state;
  scrollDown();
}

// --- a turn ------------------------------------------------------------------------------

// EventSource reconnects by itself after a drop and sends Last-Event-ID: the app resumes the
// turn right after the last event this page received.
function followTurn(turnId, eventsUrl) {
  const turn = { id: turnId, cards: new Map(), authCards: [] };
  const source = new EventSource(eventsUrl);
  const on = (name, handle) =>
    source.addEventListener(name, (event) => handle(JSON.parse(event.data)));
  on("reply", (data) => {
    settleAuthCards(turn, "✓ Connected");
    addBubble("genie", data.text);
  });
  on("skill", (data) => showSkill(turn, data));
  on("confirmation", (data) => showConfirmation(turn, data));
  on("auth", (data) => showAuth(turn, data));
  on("progress", () => setStatus("The genie is thinking…"));
  on("done", (data) => {
    source.close(); // or EventSource would reconnect once the response ends
    if (data.outcome && data.outcome !== "completed") {
      settleAuthCards(turn, "Not connected.");
      addBubble("notice", `The turn ended: ${data.outcome.replaceAll("_", " ")}.`);
    }
    setBusy(false);
  });
  on("failed", (data) => {
    source.close();
    const reference = data.request_id ? ` (request ${data.request_id})` : "";
    addBubble("notice", `Something went wrong: ${data.message}${reference}`);
    setBusy(false);
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      addBubble("notice", "Lost the connection to the app.");
      setBusy(false);
    } else {
      setStatus("Reconnecting…");
    }
  };
}

async function send(text) {
  document.querySelector(".empty")?.remove();
  document.querySelector(".suggestions")?.remove();
  addBubble("user", text);
  setBusy(true);
  setStatus("The genie is thinking…");
  try {
    if (conversationId === null) {
      conversationId = (await postJSON("/api/conversations", {})).conversation_id;
    }
    const url = `/api/conversations/${encodeURIComponent(conversationId)}/messages`;
    const turn = await postJSON(url, { text });
    followTurn(turn.turn_id, turn.events_url);
  } catch (error) {
    addBubble("notice", `Could not send: ${error.message}`);
    setBusy(false);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  send(text);
});

for (const button of document.querySelectorAll(".suggestion")) {
  button.addEventListener("click", () => send(button.textContent));
}
input.focus();
