// The lab: each experiment points its own EventSource (or a fetch) at /events with switches that
// make the server misbehave on purpose (src/lab.rs), and draws what the browser reports, event by
// event, in an output box under its card. The page's main EventSource (app.js) keeps running
// meanwhile. Text only, never HTML.

import { $, STATES, mainSource, seenIds } from "/app.js"; // the same module the page loads, run once

const TYPES = ["message", "clients", "publish", "gap", "lab"]; // every type this server sends
// Longer than any browser's default reconnection time (3 s in Chrome and Safari, 5 s in Firefox):
// a browser that meant to come back after a 204 or a 503 would have by then.
const QUIET_WAIT = 6000;
const MAX_ROWS = 300; // the retry experiment reconnects every second; keep the table readable
const LABELS = "ABCDEFGH"; // streams get short labels; the legend gives each one's URL

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

let active = null; // the run in progress, if any: starting another stops it
let runs = 0; // runs started since the page loaded, to number their outputs

function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined) made.textContent = text;
  return made;
}

// Starts a run of the experiment whose Run button this is: stops the one in progress, and puts a
// new output box at the top of this card's outputs. Everything the run draws goes into its own box,
// through the `run` object every function below is handed, so a late callback from an earlier run
// can only ever write into that run's box. The label (`run=` switch) lets the server say how many
// requests this run made.
function start(button) {
  if (active) stop(active, "stopped: another run started");
  runs += 1;
  const box = element("section", "run");
  box.dataset.state = "running";
  const status = element("span", "status", "running…");
  const stopButton = element("button", "", "Stop");
  const clear = element("button", "", "Clear");
  const head = element("p", "run-head");
  head.append(element("strong", "", `Run ${runs}`), ` at ${new Date().toLocaleTimeString()}: `, status, stopButton, clear);
  const run = {
    t0: performance.now(),
    label: `${button.dataset.run}-${Math.random().toString(36).slice(2, 10)}`,
    streams: 0,
    sources: [],
    timers: [],
    aborts: [],
    cleanups: [],
    live: true,
    box,
    status,
    stopButton,
    legend: element("ul", "legend"),
    states: element("p", "states"),
    controls: element("p", "buttons"),
    result: element("p", "result"),
    tables: element("div", "tables"),
    table: null, // the shared timeline, made on first use
  };
  run.result.setAttribute("aria-live", "polite");
  stopButton.type = clear.type = "button";
  stopButton.addEventListener("click", () => stop(run, "stopped"));
  clear.addEventListener("click", () => {
    stop(run, "stopped");
    box.remove();
  });
  box.append(head, run.legend, run.states, run.controls, run.result, run.tables);
  $(`runs-${button.dataset.run}`).prepend(box);
  active = run;
  return run;
}

// Ends a run: closes its sources, cancels its timers and fetches. What it drew stays.
function stop(run, why = "finished") {
  if (!run.live) return;
  run.live = false;
  for (const source of run.sources) source.close();
  for (const timer of run.timers) clearTimeout(timer); // clears setInterval's timers too
  for (const controller of run.aborts) controller.abort();
  for (const cleanup of run.cleanups) cleanup();
  run.status.textContent = why;
  run.box.dataset.state = "done";
  run.stopButton.disabled = true;
  if (active === run) active = null;
}

// Calls `fn` after `ms` unless the run has ended by then.
function later(run, ms, fn) {
  run.timers.push(setTimeout(() => run.live && fn(), ms));
}

function elapsed(run) {
  return Math.round(performance.now() - run.t0);
}

function result(run, text) {
  run.result.textContent = text;
}

// A timeline table in the run's box, with an optional heading; returns its body.
function timeline(run, heading) {
  const wrap = element("div", "table-wrap");
  if (heading) wrap.append(element("h4", "", heading));
  const table = element("table", "timeline");
  const head = table.createTHead().insertRow();
  // No `type` column: the DOM event that fires is named after the event's type, so it would
  // repeat `fired`. `readyState` comes early, so a phone shows it without scrolling sideways.
  for (const name of ["ms", "stream", "fired", "readyState", "lastEventId", "data"]) {
    head.append(element("th", "", name));
  }
  const body = table.createTBody();
  wrap.append(table);
  run.tables.append(wrap);
  return body;
}

// One row of a timeline: when, which stream, what the browser fired, and readyState right after.
function row(run, body, name, kind, event, state) {
  const tr = body.insertRow();
  tr.dataset.stream = name;
  tr.dataset.kind = kind;
  tr.append(element("td", "", `+${elapsed(run)}`), element("td", "", name), element("td", "", kind));
  tr.append(element("td", "", state));
  for (const text of event ? [event.lastEventId, event.data] : ["", ""]) {
    tr.append(element("td", "", text));
  }
  while (body.rows.length > MAX_ROWS) body.rows[0].remove();
  return tr;
}

// Adds a line to the legend: the stream's label, what it is, and the URL it opened.
function legend(run, name, what, url) {
  const item = element("li");
  if (name) item.append(element("strong", "", name), " ");
  item.append(what ? `${what}: ` : "", element("code", "", url));
  run.legend.append(item);
}

// Opens an EventSource on `url` under the next label and logs everything it reports. `on.open`,
// `on.event` and `on.error` let an experiment keep its own score; they get the time and the
// source. `on.body` puts the rows in a table of their own; `on.rows` draws at most that many
// events, then one row that counts the rest.
function watch(run, what, url, on = {}) {
  const name = LABELS[run.streams];
  run.streams += 1;
  const source = new EventSource(url);
  run.sources.push(source);
  legend(run, name, what, `new EventSource("${url}")`);
  const body = on.body ?? (run.table ??= timeline(run));
  const state = () => STATES[source.readyState];
  let events = 0;
  let more = null; // the row that counts the events not drawn
  source.addEventListener("open", () => {
    row(run, body, name, "open", null, state());
    on.open?.(elapsed(run), source);
  });
  source.addEventListener("error", () => {
    row(run, body, name, "error", null, state());
    on.error?.(elapsed(run), source);
  });
  for (const type of TYPES) {
    source.addEventListener(type, (event) => {
      events += 1;
      if (on.rows === undefined || events <= on.rows) {
        // The DOM event fired is named after the event's type (§9.2.6): `clients` reaches only a
        // listener for "clients", never `onmessage`, which hears only the type `message`.
        row(run, body, name, event.type, event, state());
      } else {
        // One row stands for the rest: how many, and the newest one's id and time.
        more ??= row(run, body, name, "more", null, state());
        more.cells[0].textContent = `+${elapsed(run)}`;
        more.cells[3].textContent = state();
        more.cells[4].textContent = event.lastEventId;
        more.cells[5].textContent = `… ${plural(events - on.rows, "more event")}, the newest with this id`;
      }
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
  const run = start(button);
  const connections = [];
  // The ticks the page's own stream gets meanwhile: the lab stream's must be exactly a run of them.
  const witness = [];
  const main = mainSource();
  const onTick = (event) => witness.push(event.lastEventId);
  main.addEventListener("message", onTick);
  run.cleanups.push(() => main.removeEventListener("message", onTick));
  watch(run, "", `/events?end_after=3&retry=1000&run=${run.label}`, {
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
      later(run, 300, () => {
        const ids = connections.flatMap((c) => c.ids);
        const from = witness.indexOf(ids[0]);
        const steady = ids.every((id, i) => witness[from + i] === id);
        const delays = connections.slice(1).map((c, i) => `${c.opened - connections[i].ended} ms`);
        result(
          run,
          `3 connections. What the browser sent, as the server received it: ${connections.map((c) => c.sent).join("; ")}. ` +
            `Tick ids: ${connections.map((c) => c.ids.join(" ")).join(" | ")}: ` +
            (from < 0
              ? "the page's own stream did not get them (is it closed?), so there is nothing to compare. "
              : steady
                ? "the same ticks the page's own stream got, in order: no gap, no duplicate. "
                : "A GAP OR A DUPLICATE against the page's own stream. ") +
            `Reconnected after ${delays.join(" and ")}.`,
        );
        stop(run);
      });
    },
  });
}

// 2, 3 and 4: streams that the browser should give up on (or not), then, after QUIET_WAIT, how
// many requests the server saw for each: a browser that gave up sends no second one.
function compare(button, variants) {
  const run = start(button);
  const named = variants.map(([what, query], i) => {
    const tag = `${run.label}-${i + 1}`;
    const source = watch(run, what, `/events?${query}&run=${tag}`);
    return { name: LABELS[i], what, tag, source };
  });
  result(run, `Waiting ${QUIET_WAIT / 1000} s for any reconnect…`);
  later(run, QUIET_WAIT, async () => {
    const counts = await Promise.all(named.map((v) => seen(v.tag)));
    result(
      run,
      `After ${QUIET_WAIT / 1000} s: ` +
        named
          .map(
            (v, i) =>
              `${v.name} (${v.what}): readyState ${STATES[v.source.readyState]}, the server saw ${plural(counts[i], "request")}.`,
          )
          .join(" "),
    );
    stop(run);
  });
}

// 5. Two streams that end after every event, with different retry times: measured side by side.
function retryTimes(button) {
  const run = start(button);
  const delays = [];
  for (const retry of [200, 5000]) {
    const list = [];
    delays.push([LABELS[delays.length], retry, list]);
    let lastError = null;
    watch(run, `retry: ${retry}`, `/events?end_after=1&retry=${retry}`, {
      error: (t) => (lastError = t),
      open: (t) => lastError !== null && list.push(t - lastError),
    });
  }
  const describe = (list) => {
    if (list.length === 0) return "not yet reconnected";
    if (list.length <= 3) return `reconnected after ${list.join(" and ")} ms`;
    return `reconnected ${list.length} times, each after ${Math.min(...list)} to ${Math.max(...list)} ms`;
  };
  const report = () => delays.map(([name, retry, list]) => `${name} (retry: ${retry}): ${describe(list)}`).join(". ");
  run.timers.push(setInterval(() => result(run, report()), 500));
  later(run, 8000, () => {
    result(run, report() + ". (Each delay runs from the error to the next open.)");
    stop(run);
  });
}

function button(run, text, onClick) {
  const made = element("button", "", text);
  made.type = "button";
  made.addEventListener("click", onClick);
  run.controls.append(made);
  return made;
}

// 6. Six more streams on top of the page's own: the browser's per-host limit for HTTP/1.1 shows.
function sevenStreams(button_) {
  const run = start(button_);
  const streams = [];
  for (let i = 1; i <= 6; i++) streams.push(watch(run, "", `/events?run=${run.label}`));
  const show = () => {
    run.states.textContent = streams.map((s, i) => `${LABELS[i]} ${STATES[s.readyState]}`).join(" · ");
  };
  show();
  run.timers.push(setInterval(show, 200));
  button(run, "Close the oldest open stream", () => {
    streams.find((s) => s.readyState !== EventSource.CLOSED)?.close();
    show();
  });
  const publish = button(run, "Publish from this page", async () => {
    publish.disabled = true;
    const sent = performance.now();
    result(run, "Publish: waiting for a free connection…");
    // The answer may come after this run has ended: it still belongs to this run, and goes in its box.
    try {
      const response = await fetch("/publish", { method: "POST", body: "published during the seven-streams experiment" });
      result(run, `Publish: sent (${response.status}) after ${Math.round(performance.now() - sent)} ms.`);
    } catch (error) {
      result(run, `Publish: not sent: ${error.message}`);
    }
  });
}

// Appends text to `out` with each line end made visible by a small box drawn in CSS: no font
// needed, where a Control Picture such as ␊ is in no font a stock Debian installs, and shows as an
// empty box. The characters themselves stay in the text, so the element's textContent is exactly
// what arrived.
function showLineEnds(out, text) {
  for (const part of text.split(/(\r|\n)/)) {
    if (part === "\n" || part === "\r") out.append(element("span", part === "\n" ? "lf" : "cr"));
    if (part !== "") out.append(part);
  }
}

// 7. The real bytes, through fetch() and a stream reader: what curl -N shows.
async function rawBytes(button) {
  const run = start(button);
  const controller = new AbortController();
  run.aborts.push(controller);
  const out = element("pre", "wire bytes");
  run.tables.append(out);
  legend(run, "", "", 'fetch("/events") and response.body.getReader(), for 4 s');
  let bytes = 0;
  later(run, 4000, () => {
    result(run, `Read ${plural(bytes, "byte")} in 4 s. The fetch is aborted now, and the client count goes back down.`);
    stop(run);
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
      showLineEnds(out, decoder.decode(value, { stream: true }));
    }
  } catch (error) {
    if (error.name !== "AbortError") result(run, `The fetch failed: ${error.message}`);
  }
}

// 8. Resuming with `after=ID`: once after an id the page's own stream got, once after one older
// than anything the server keeps.
function resume(button) {
  const run = start(button);
  const ids = seenIds();
  if (ids.length < 4) {
    result(run, `The page's own stream has seen ${plural(ids.length, "event")} with an id; it needs 4. Run it again in a few seconds.`);
    stop(run);
    return;
  }
  const chosen = ids.at(-4);
  const missed = ids.slice(-3); // what the page got after `chosen`: A must get exactly these first
  const sides = element("div", "pair");
  run.tables.append(sides);
  const side = (heading) => {
    const body = timeline(run, heading);
    sides.append(body.closest(".table-wrap"));
    return body;
  };
  // Every event A and B get, as [type, lastEventId, data]; `clients` and `gap` carry no id.
  const got = { A: [], B: [] };
  const keep = (list) => (event) => list.push([event.type, event.lastEventId, event.data]);
  watch(run, `after an id this page got`, `/events?after=${chosen}`, { body: side("A: a recent id"), event: keep(got.A) });
  watch(run, "after an id older than anything kept", "/events?after=1-0", {
    body: side("B: an id from long ago"),
    rows: 6,
    event: keep(got.B),
  });
  later(run, 2000, () => {
    const withIds = (list) => list.filter(([type]) => type === "message" || type === "publish").map(([, id]) => id);
    const a = withIds(got.A);
    const aGap = got.A.some(([type]) => type === "gap");
    const again = missed.every((id, i) => a[i] === id);
    const textA =
      `A, after=${chosen}: ${aGap ? "A GAP" : "no gap"}; ` +
      (again
        ? `the ${missed.length} events the page got after it came again with their ids (${missed.join(", ")}), `
        : `NOT the events the page got after it (${missed.join(", ")}) but ${a.slice(0, 3).join(", ")}, `) +
      `then ${Math.max(a.length - missed.length, 0)} more.`;
    const b = withIds(got.B);
    const first = got.B[0];
    let textB = "B, after=1-0: ";
    if (first?.[0] === "gap") {
      let resumeFrom = null;
      try {
        resumeFrom = JSON.parse(first[2]).resume_from;
      } catch {
        // Left null: the sentence below says the gap named no event to resume from.
      }
      textB +=
        `first a gap (data ${first[2]}), then ${plural(b.length, "event")} in 2 s` +
        (b.length ? `, ${b[0]} to ${b.at(-1)}` : "") +
        (resumeFrom && b[0] === resumeFrom ? `: from the oldest event kept, as the gap said.` : ".");
    } else {
      textB += `NO GAP first: ${first ? first[0] : "nothing arrived"}.`;
    }
    result(run, `${textA} ${textB}`);
    stop(run);
  });
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
  resume,
};

for (const trigger of document.querySelectorAll("[data-run]")) {
  trigger.addEventListener("click", () => EXPERIMENTS[trigger.dataset.run](trigger));
}
