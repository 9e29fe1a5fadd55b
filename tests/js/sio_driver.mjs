// A remote-controlled Socket.IO client for the cargo test suite (tests/src/sio.rs).
//
// It runs the official `socket.io-client` (pinned in package-lock.json) exactly as a browser
// page would, and only relays: commands arrive on stdin as JSON lines, and everything that
// happens is written to stdout as one JSON line each. The Rust tests decide and assert.
//
// Commands:
//   {"cmd":"connect","url":"http://..","query":{..},"auth":{..},"headers":{..},"transports":["websocket","polling"],
//    "on_connect":[{"event":"subscribe","args":[..]}]}   emitted from the connect handler, as the
//                                                        legacy page does
//   {"cmd":"emit","event":"new message","args":[..],"count":1}      no acknowledgement asked
//   {"cmd":"emit","event":"..","raw_args":"[..]"}   arguments as JSON text parsed here (it may
//                                                    hold lone surrogates, as a page's strings can)
//   {"cmd":"emit","event":"..","args":[..],"ack":7,"timeout_ms":10000}  with one
//   {"cmd":"fetch","url":"http://..","id":3}                         a plain HTTP GET
//   {"cmd":"disconnect"}
//   {"cmd":"exit"}
// Output lines:
//   {"type":"connect","id":".."}            {"type":"connect_error","message":"..","data":..}
//   {"type":"disconnect","reason":".."}     {"type":"event","name":"..","args":[..]}
//   {"type":"ack","id":7,"error":null|"..","args":[..]}
//   {"type":"fetch","id":3,"status":200,"content_type":"..","body":".."}
//   {"type":"driver_error","message":".."}  a command the driver could not carry out

import { createInterface } from "node:readline";
import { io } from "socket.io-client";

let socket = null;

function out(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

function connect(cmd) {
  if (socket) {
    socket.removeAllListeners();
    socket.offAny();
    socket.disconnect();
  }
  socket = io(cmd.url, {
    query: cmd.query ?? {},
    auth: cmd.auth ?? undefined,
    // HTTP headers of the handshake (a browser's cookie, Origin), as Node.js can send them.
    extraHeaders: cmd.headers ?? {},
    transports: cmd.transports ?? ["websocket", "polling"],
    // The tests reconnect explicitly, so what happens is always what they asked for.
    reconnection: false,
    forceNew: true,
    timeout: cmd.timeout_ms ?? 10000,
  });
  const onConnect = cmd.on_connect ?? [];
  socket.on("connect", () => {
    out({ type: "connect", id: socket.id });
    for (const e of onConnect) socket.emit(e.event, ...(e.args ?? []));
  });
  socket.on("connect_error", (err) =>
    out({ type: "connect_error", message: String(err?.message ?? err), data: err?.data ?? null }),
  );
  socket.on("disconnect", (reason) => out({ type: "disconnect", reason }));
  socket.onAny((name, ...args) => out({ type: "event", name, args }));
}

function emit(cmd) {
  if (!socket) {
    out({ type: "driver_error", message: "emit before connect" });
    return;
  }
  const args = cmd.raw_args !== undefined ? JSON.parse(cmd.raw_args) : (cmd.args ?? []);
  if (cmd.ack !== undefined && cmd.ack !== null) {
    socket.timeout(cmd.timeout_ms ?? 10000).emit(cmd.event, ...args, (err, ...reply) => {
      out({ type: "ack", id: cmd.ack, error: err ? String(err.message ?? err) : null, args: reply });
    });
    return;
  }
  for (let i = 0; i < (cmd.count ?? 1); i++) {
    socket.emit(cmd.event, ...args);
  }
}

async function fetchUrl(cmd) {
  try {
    const response = await fetch(cmd.url);
    const body = await response.text();
    out({
      type: "fetch",
      id: cmd.id,
      status: response.status,
      content_type: response.headers.get("content-type"),
      body,
    });
  } catch (err) {
    out({ type: "fetch", id: cmd.id, status: 0, content_type: null, body: String(err) });
  }
}

const commands = createInterface({ input: process.stdin, crlfDelay: Infinity });
commands.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    out({ type: "driver_error", message: `unreadable command: ${err}` });
    return;
  }
  switch (cmd.cmd) {
    case "connect":
      connect(cmd);
      break;
    case "emit":
      emit(cmd);
      break;
    case "fetch":
      fetchUrl(cmd);
      break;
    case "disconnect":
      if (socket) socket.disconnect();
      break;
    case "exit":
      process.exit(0);
      break;
    default:
      out({ type: "driver_error", message: `unknown command ${JSON.stringify(cmd.cmd)}` });
  }
});
// The test dropped its end: nothing more will be asked.
commands.on("close", () => process.exit(0));
