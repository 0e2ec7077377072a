// The page side of Server-Sent Events: one EventSource and what it reports.
// Event data always goes into the page as text (textContent), never as HTML.
"use strict";

export const STATES = ["CONNECTING", "OPEN", "CLOSED"]; // EventSource.readyState 0, 1, 2
const LOG_CAP = 100; // keep the page fast after hours of ticks

export const $ = (id) => document.getElementById(id);
let source = null;
// The page's own EventSource (a new one after Reopen): the lab compares its streams against it.
export const mainSource = () => source;
let reconnects = 0;
let previousId = "";
// The ids this page's stream got, oldest first (the last LOG_CAP): lab experiment 8 resumes after one.
const seen = [];
export const seenIds = () => [...seen];

function showState() {
  const state = STATES[source.readyState];
  $("state").textContent = state;
  $("state").dataset.state = state;
  $("close").disabled = source.readyState === EventSource.CLOSED;
  $("reopen").disabled = source.readyState !== EventSource.CLOSED;
}

function announce(text) {
  $("announce").textContent = text;
}

// Rebuilds a frame from what the browser reports for this event, since an EventSource never
// shows a page the bytes: `id:` if the last event ID changed, `event:` unless the type is the
// default `message`, one `data:` line per line of data. It cannot show the `retry:` frame,
// comments, or an `id:` line that repeated the last id; the lab's raw-bytes experiment can.
function wireFrame(event) {
  const lines = [];
  if (event.lastEventId !== previousId) lines.push(`id: ${event.lastEventId}`);
  if (event.type !== "message") lines.push(`event: ${event.type}`);
  for (const line of event.data.split("\n")) lines.push(`data: ${line}`);
  return lines.join("\n") + "\n\n";
}

// What a `gap` event means, in words. Its data is this server's JSON (src/event_log.rs): the id the
// browser asked to resume after, and the oldest event still kept, where the replay starts.
function gapNote(data) {
  const note = document.createElement("p");
  note.className = "note";
  let gap = {};
  try {
    gap = JSON.parse(data);
  } catch {
    // Not this server's JSON: the words below say what they can without it.
  }
  const asked = gap.last_event_id ? `after ${gap.last_event_id}` : "after the id the browser sent";
  const from = gap.resume_from ? `replaying from ${gap.resume_from}, the oldest event it keeps` : "it keeps no events to replay";
  note.textContent = `gap: the server does not have the events ${asked} (trimmed, or the id is not one of this run's); ${from}.`;
  return note;
}

function logEvent(event) {
  const item = document.createElement("li");
  item.className = `entry type-${event.type}`;

  const received = document.createElement("dl");
  for (const [name, value] of [["type", event.type], ["lastEventId", event.lastEventId], ["data", event.data]]) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    received.append(dt, dd);
  }
  const wire = document.createElement("pre");
  wire.className = "wire";
  wire.textContent = wireFrame(event);
  item.append(received, wire);
  if (event.type === "gap") item.append(gapNote(event.data));

  // An event without `id:` leaves lastEventId as it was (§9.2.6): only a changed one is new.
  if (event.lastEventId !== "" && event.lastEventId !== previousId) seen.push(event.lastEventId);
  while (seen.length > LOG_CAP) seen.shift();
  previousId = event.lastEventId;
  $("last-id").textContent = event.lastEventId || "none yet";
  $("log").prepend(item);
  while ($("log").children.length > LOG_CAP) $("log").lastElementChild.remove();
}

// `?after=ID` in the page's own address (the failover button puts it there): the first stream
// resumes after that id, as `Last-Event-ID` would. A reopened stream starts fresh, as before.
let after = new URLSearchParams(location.search).get("after");

function open() {
  let opened = false;
  source = new EventSource(after ? `/events?after=${encodeURIComponent(after)}` : "/events");
  after = null;
  showState();

  source.addEventListener("open", () => {
    if (opened) reconnects += 1; // this EventSource was open before: the browser reconnected
    opened = true;
    $("reconnects").textContent = reconnects;
    showState();
    announce("Connected.");
  });
  // An error either means "reconnecting" (readyState CONNECTING) or "gave up" (CLOSED).
  source.addEventListener("error", () => {
    showState();
    announce(source.readyState === EventSource.CLOSED ? "Connection closed." : "Connection lost, reconnecting.");
  });

  // The default type: ticks with the server time.
  source.addEventListener("message", (event) => {
    try {
      $("time").textContent = JSON.parse(event.data).time;
    } catch {
      $("time").textContent = event.data;
    }
    logEvent(event);
  });
  source.addEventListener("clients", (event) => {
    $("clients").textContent = event.data;
    logEvent(event);
  });
  source.addEventListener("publish", (event) => {
    logEvent(event);
    announce(`Published: ${event.data}`);
  });
  source.addEventListener("gap", (event) => {
    logEvent(event);
    announce("Some events were missed: the server no longer had them.");
  });
}

$("close").addEventListener("click", () => {
  source.close();
  showState();
  announce("Closed. The browser will not reconnect.");
});
$("reopen").addEventListener("click", open);

$("publish").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = $("publish-result");
  try {
    const response = await fetch("/publish", { method: "POST", body: $("text").value });
    result.textContent = response.ok ? `sent (${response.status})` : await response.text();
  } catch (error) {
    result.textContent = `not sent: ${error.message}`;
  }
});

// Several servers on one shared log: which one this is, and a way to move to another one,
// carrying the last event ID seen (8081 and 8082 are the cluster example's default ports).
$("instance").textContent = location.host;
$("failover-port").value = { 8081: "8082", 8082: "8081" }[location.port] ?? "";
// Only another port is somewhere to fail over to: an empty box would mean port 80, and this
// page's own port, or one past 65535 (which the URL refuses), a reload of this page.
const portGiven = () => {
  const port = $("failover-port").value;
  const valid = /^[0-9]{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535;
  const own = location.port || (location.protocol === "https:" ? "443" : "80");
  $("failover").disabled = !valid || Number(port) === Number(own);
};
$("failover-port").addEventListener("input", portGiven);
portGiven();
$("failover").addEventListener("click", () => {
  const next = new URL(location.href);
  next.port = $("failover-port").value;
  next.search = previousId ? `?after=${encodeURIComponent(previousId)}` : "";
  location.assign(next);
});

$("log-cap").textContent = LOG_CAP;
// The page's own address, whatever port the server was given.
$("curl-hint").textContent = `curl -N ${location.host}/events`;
open();
