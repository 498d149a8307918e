// Talking to the Shunter API: JSON requests, and server-sent events read with fetch
// (EventSource cannot send an Authorization header, and the token must not go in a URL).
// The token is kept in sessionStorage: this browser tab only.
"use strict";

export const session = {
  authRequired: true,   // from /api/config
  simulator: false,     // from /api/config: the nodes are kwok's (make demo)
  namespace: sessionStorage.getItem("shunter.namespace") || "",
  token: sessionStorage.getItem("shunter.token") || "",
};

export function saveSession(namespace, token) {
  session.namespace = namespace;
  session.token = token;
  sessionStorage.setItem("shunter.namespace", namespace);
  sessionStorage.setItem("shunter.token", token);
}

export function query(extra = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(extra)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  if (session.namespace) params.set("namespace", session.namespace);
  const text = params.toString();
  return text ? `?${text}` : "";
}

function headers(accept, extra = {}) {
  const result = { "Accept": accept, ...extra };
  if (session.token) result["Authorization"] = `Bearer ${session.token}`;
  return result;
}

async function json(response) {
  try { return await response.json(); } catch (_) { return null; }
}

export async function request(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers("application/json",
                     body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, data: await json(response) };
}

// A text resource that may stream (a followed log): onText gets each piece as it
// comes; a JSON error body is returned as data.
export async function readText(path, onText, signal) {
  const response = await fetch(path, { headers: headers("text/plain"), signal });
  if (response.status !== 200) return { status: response.status, data: await json(response) };
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    onText(value);
  }
  return { status: 200, data: null, simulated: response.headers.get("x-shunter-simulated-node") };
}

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }  // ":" lines are heartbeats
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
  }
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Subscribe to a server-sent event stream; reconnects when the server ends it (every
// few minutes, so the token is checked again) or the connection drops.
export function subscribe(path, onEvent, onState) {
  const controller = new AbortController();
  let stopped = false;
  (async () => {
    while (!stopped) {
      let wait = 500;
      try {
        const response = await fetch(path, {
          headers: headers("text/event-stream"), signal: controller.signal,
        });
        if (response.status === 200) {
          onState("live");
          await readEvents(response.body, onEvent);
          onState("reconnecting");
        } else {
          const data = await json(response);
          onState("refused", (data && data.message) || `HTTP ${response.status}`);
          wait = 10000;  // a refused token stays refused until the user changes it
        }
      } catch (error) {
        if (stopped) return;
        onState("offline", error.message);
        wait = 2000;
      }
      if (!stopped) await pause(wait);
    }
  })();
  return { close() { stopped = true; controller.abort(); } };
}
