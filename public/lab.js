// The lab: each experiment points its own EventSource (or a fetch) at /events with switches that
// make the server misbehave on purpose (src/lab.rs), and draws what the browser reports, event by
// event. The page's main EventSource (app.js) keeps running meanwhile. Text only, never HTML.

import { $, STATES, mainSource } from "/app.js"; // the same module the page loads, run once

const TYPES = ["message", "clients", "publish", "gap", "lab"]; // every type this server sends
// Longer than any browser's default reconnection time (3 s in Chrome and Safari, 5 s in Firefox):
// a browser that meant to come back after a 204 or a 503 would have by then.
const QUIET_WAIT = 6000;
const MAX_ROWS = 300; // the retry experiment reconnects every second; keep the table readable

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

let run = null; // the experiment running now: its sources, timers and fetches

// Stops whatever runs, clears the outputs, and starts a run with its own label (`run=` switch),
// so the server can say how many requests this run made.
function start(button) {
  stop();
  run = {
    t0: performance.now(),
    label: `${button.dataset.run}-${Math.random().toString(36).slice(2, 10)}`,
    sources: [],
    timers: [],
    aborts: [],
    cleanups: [],
  };
  $("lab-title-running").textContent = button.closest("li").querySelector("h3").textContent;
  for (const id of ["lab-urls", "lab-timeline", "lab-controls"]) $(id).replaceChildren();
  for (const id of ["lab-result", "lab-states", "lab-bytes"]) $(id).textContent = "";
  $("lab-bytes").hidden = true;
  $("lab-stop").disabled = false;
  return run;
}

// Ends the running experiment: closes its sources, cancels its timers and fetches. What it drew stays.
function stop() {
  if (!run) return;
  for (const source of run.sources) source.close();
  for (const timer of run.timers) clearTimeout(timer); // clears setInterval's timers too
  for (const controller of run.aborts) controller.abort();
  for (const cleanup of run.cleanups) cleanup();
  run = null;
  $("lab-stop").disabled = true;
}

function later(ms, fn) {
  const current = run;
  current.timers.push(setTimeout(() => run === current && fn(), ms));
}

function ms() {
  return Math.round(performance.now() - run.t0);
}

function result(text) {
  $("lab-result").textContent = text;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

// One row of the timeline: when, which stream, what the browser fired, and readyState right after.
function row(name, kind, event, state) {
  const tr = document.createElement("tr");
  tr.dataset.stream = name;
  tr.dataset.kind = kind;
  tr.dataset.state = state;
  tr.append(cell(`+${ms()}`), cell(name), cell(kind));
  if (event) tr.append(cell(event.type), cell(event.lastEventId), cell(event.data));
  else tr.append(cell(""), cell(""), cell(""));
  tr.append(cell(state));
  $("lab-timeline").append(tr);
  while ($("lab-timeline").children.length > MAX_ROWS) $("lab-timeline").firstElementChild.remove();
}

// Opens an EventSource on `url` and logs everything it reports. `on.open`, `on.event` and
// `on.error` let an experiment keep its own score; they get the time and the source.
function watch(name, url, on = {}) {
  const source = new EventSource(url);
  run.sources.push(source);
  const code = document.createElement("code");
  code.textContent = `${name}: new EventSource("${url}")`;
  $("lab-urls").append(code);
  const state = () => STATES[source.readyState];
  source.addEventListener("open", () => {
    row(name, "open", null, state());
    on.open?.(ms(), source);
  });
  source.addEventListener("error", () => {
    row(name, "error", null, state());
    on.error?.(ms(), source);
  });
  for (const type of TYPES) {
    source.addEventListener(type, (event) => {
      // The DOM event fired is named after the event's type (§9.2.6): `clients` reaches only a
      // listener for "clients", never `onmessage`, which hears only the type `message`.
      row(name, event.type, event, state());
      on.event?.(event, source);
    });
  }
  return source;
}

async function seen(label) {
  const response = await fetch(`/lab/seen?run=${label}`);
  return Number(await response.text());
}

// 1. The stream ends after 3 events; the browser reconnects after 1 s with Last-Event-ID.
function streamEnds(button) {
  const current = start(button);
  const connections = [];
  // The ticks the page's own stream gets meanwhile: the lab stream's must be exactly a run of them.
  const witness = [];
  const main = mainSource();
  const onTick = (event) => witness.push(event.lastEventId);
  main.addEventListener("message", onTick);
  current.cleanups.push(() => main.removeEventListener("message", onTick));
  watch("A", `/events?end_after=3&retry=1000&run=${current.label}`, {
    open: (t) => connections.push({ opened: t, sent: "", ids: [] }),
    event: (event) => {
      const connection = connections.at(-1);
      if (event.type === "lab") connection.sent = event.data;
      // The ticks. A `clients` event has no id of its own: its lastEventId is the one before it.
      else if (event.type === "message") connection.ids.push(event.lastEventId);
    },
    error: (t, source) => {
      connections.at(-1).ended = t;
      if (connections.length < 3) return;
      source.close();
      // A moment for the page's own stream to get the last tick too: two connections, two writes.
      later(300, () => {
        const ids = connections.flatMap((c) => c.ids);
        const from = witness.indexOf(ids[0]);
        const steady = ids.every((id, i) => witness[from + i] === id);
        const delays = connections.slice(1).map((c, i) => `${c.opened - connections[i].ended} ms`);
        result(
          `3 connections. What the browser sent, as the server received it: ${connections.map((c) => c.sent).join("; ")}. ` +
            `Tick ids: ${connections.map((c) => c.ids.join(" ")).join(" | ")}: ` +
            (from < 0
              ? "the page's own stream did not get them (is it closed?), so there is nothing to compare. "
              : steady
                ? "the same ticks the page's own stream got, in order: no gap, no duplicate. "
                : "A GAP OR A DUPLICATE against the page's own stream. ") +
            `Reconnected after ${delays.join(" and ")}.`,
        );
        stop();
      });
    },
  });
}

// 2, 3 and 4: streams that the browser should give up on (or not), then, after QUIET_WAIT, how
// many requests the server saw for each: a browser that gave up sends no second one.
function compare(button, variants) {
  const { label } = start(button);
  const named = variants.map(([name, query], i) => {
    const tag = `${label}-${i + 1}`;
    return { name, tag, source: watch(name, `/events?${query}&run=${tag}`) };
  });
  result(`Waiting ${QUIET_WAIT / 1000} s for any reconnect…`);
  later(QUIET_WAIT, async () => {
    const counts = await Promise.all(named.map((v) => seen(v.tag)));
    result(
      `After ${QUIET_WAIT / 1000} s: ` +
        named
          .map((v, i) => `${v.name}: readyState ${STATES[v.source.readyState]}, the server saw ${plural(counts[i], "request")}.`)
          .join(" "),
    );
    stop();
  });
}

// 5. Two streams that end after every event, with different retry times: measured side by side.
function retryTimes(button) {
  start(button);
  const delays = { "retry=200": [], "retry=5000": [] };
  for (const name of Object.keys(delays)) {
    let lastError = null;
    watch(name, `/events?end_after=1&${name}`, {
      error: (t) => (lastError = t),
      open: (t) => lastError !== null && delays[name].push(t - lastError),
    });
  }
  const describe = (list) => {
    if (list.length === 0) return "not yet reconnected";
    if (list.length <= 3) return `reconnected after ${list.join(" and ")} ms`;
    return `reconnected ${list.length} times, each after ${Math.min(...list)} to ${Math.max(...list)} ms`;
  };
  const report = () =>
    Object.entries(delays)
      .map(([name, list]) => `${name}: ${describe(list)}`)
      .join(". ");
  const timer = setInterval(() => result(report()), 500);
  run.timers.push(timer);
  later(11_000, () => {
    result(report() + ". (Each delay runs from the error to the next open.)");
    stop();
  });
}

function button(text, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.addEventListener("click", onClick);
  $("lab-controls").append(element);
  return element;
}

// 6. Six more streams on top of the page's own: the browser's per-host limit for HTTP/1.1 shows.
function sevenStreams(button_) {
  const { label } = start(button_);
  const streams = [];
  for (let i = 1; i <= 6; i++) streams.push(watch(`#${i}`, `/events?run=${label}`));
  const show = () => {
    $("lab-states").textContent = streams.map((s, i) => `#${i + 1} ${STATES[s.readyState]}`).join(" · ");
  };
  show();
  run.timers.push(setInterval(show, 200));
  button("Close the oldest open stream", () => {
    streams.find((s) => s.readyState !== EventSource.CLOSED)?.close();
    show();
  });
  const publish = button("Publish from this page", async () => {
    publish.disabled = true;
    const sent = performance.now();
    result("Publish: waiting for a free connection…");
    try {
      const response = await fetch("/publish", { method: "POST", body: "published during the seven-streams experiment" });
      result(`Publish: sent (${response.status}) after ${Math.round(performance.now() - sent)} ms.`);
    } catch (error) {
      result(`Publish: not sent: ${error.message}`);
    }
  });
}

// 7. The real bytes, through fetch() and a stream reader: what curl -N shows.
async function rawBytes(button) {
  const current = start(button);
  const controller = new AbortController();
  current.aborts.push(controller);
  const out = $("lab-bytes");
  out.hidden = false;
  const code = document.createElement("code");
  code.textContent = 'fetch("/events") and response.body.getReader(), for 4 s';
  $("lab-urls").append(code);
  let bytes = 0;
  later(4000, () => {
    result(`Read ${plural(bytes, "byte")} in 4 s. The fetch is aborted now, and the client count goes back down.`);
    stop();
  });
  try {
    const response = await fetch("/events", { signal: controller.signal, cache: "no-store" });
    out.textContent = `HTTP ${response.status}, Content-Type: ${response.headers.get("content-type")}\n\n`;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      bytes += value.length;
      // Line ends made visible: ␍ for CR, ␊ for LF (which also breaks the line here).
      out.textContent += decoder.decode(value, { stream: true }).replaceAll("\r", "␍").replaceAll("\n", "␊\n");
    }
  } catch (error) {
    if (error.name !== "AbortError") result(`The fetch failed: ${error.message}`);
  }
}

const EXPERIMENTS = {
  ends: streamEnds,
  "no-content": (b) => compare(b, [["204", "status=204"]]),
  refused: (b) => compare(b, [["503", "status=503"], ["404", "status=404"]]),
  type: (b) =>
    compare(b, [
      ["text/plain", "type=text%2Fplain&retry=1000"],
      ["text/event-stream;charset=utf-8", "type=text%2Fevent-stream%3Bcharset%3Dutf-8&retry=1000"],
    ]),
  retry: retryTimes,
  seven: sevenStreams,
  bytes: rawBytes,
};

for (const element of document.querySelectorAll("[data-run]")) {
  element.addEventListener("click", () => EXPERIMENTS[element.dataset.run](element));
}
$("lab-stop").addEventListener("click", () => {
  stop();
  result("Stopped.");
});
