// A stand-in for the legacy Node.js chat server, for the load generator's tests
// (tests/binary/bench_smoke.rs). The real one cannot run in CI; this one speaks its event
// protocol (LEGACY.md §2-§4) with the official `socket.io` server (pinned in package-lock.json),
// keeps messages in memory, and, like the legacy server, never acknowledges an event: a client
// that waits for an ack waits forever, which is what the tests guard against.
//
//   node noack_server.mjs [--secret qwerty] [--admin adminpass=admin] [--company Socketgram]
//                         [--newest-of-cid]
//
// Prints `listening port=N` once it listens on 127.0.0.1 (a free port); exits when stdin
// closes, so it never outlives the test that started it.
//
// --newest-of-cid reproduces LEGACY.md §9.6: after storing a visitor's message it sends that
// visitor's newest message, read a moment later (the legacy server's second query), instead of
// the one it stored, so quick messages come back as duplicates of the newest.
//
// Events (what the legacy server does with them, without its other defects: identities are the
// handshake's, not the payload's):
//   visitor `?id=<cid>&room=<md5("id" + cid + secret)>`, anything else is disconnected
//   subscribe                 the last 20 messages as `new message`, oldest first;
//                             `add history button` when there are more; admins get `online`
//   new message {message}     stored (next label), `new message` to the visitor's sockets and
//                             to every admin
//   take history {mid}        `drop history button`, up to 10 older than `mid` as
//                             `new message history` (newest first), `add history button` if more
//   admin `?<name>=<value>`:
//   subscribe:servadm {room}  joins the room
//   new message:servadm {username, message, adm}   stored, sent like a visitor's message
//   update admlist            nothing to reload
//   a visitor's last subscribed socket going: `offline` to admins

import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

const { values: options } = parseArgs({
  options: {
    secret: { type: "string", default: "qwerty" },
    admin: { type: "string", default: "adminpass=admin" },
    company: { type: "string", default: "Socketgram" },
    "newest-of-cid": { type: "boolean", default: false },
  },
});
const [adminName, adminValue] = options.admin.split("=");
const newestOfCid = options["newest-of-cid"];

/** Stored messages per visitor id, oldest first. */
const messages = new Map();
let lastLabel = 0;
/** Subscribed sockets per visitor id. */
const visitors = new Map();
const admins = new Set();

const roomOf = (cid) => createHash("md5").update(`id${cid}${options.secret}`).digest("hex");

function pad(n) {
  return String(n).padStart(2, "0");
}

function legacyDate(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function store(cid, aid, direction, text) {
  const row = { id: ++lastLabel, cid, aid, direction, date: new Date(), message: String(text) };
  if (!messages.has(cid)) messages.set(cid, []);
  messages.get(cid).push(row);
  return row;
}

/** The legacy `new message` payload (LEGACY.md §4). */
function payload(row) {
  return {
    username: row.cid,
    message: row.message,
    date: legacyDate(row.date),
    adm: row.aid === "0" ? "0" : `${row.aid} ${options.company}`,
    label: row.id,
  };
}

/** Sends a stored message to the visitor's sockets and to every admin. */
function deliver(row) {
  const send = (r) => {
    for (const s of visitors.get(r.cid) ?? []) s.emit("new message", payload(r));
    for (const a of admins) a.emit("new message", payload(r));
  };
  if (newestOfCid) {
    // As the legacy server: the row sent is whatever is newest when the second query runs.
    setTimeout(() => {
      const rows = messages.get(row.cid);
      send(rows[rows.length - 1]);
    }, 5);
  } else {
    send(row);
  }
}

// Handlers take the payload only: socket.io hands a function as the last argument when the
// client asked for an ack, and it is never called, as with the legacy server.
function onVisitor(socket, cid) {
  const room = roomOf(cid);
  let subscribed = false;
  socket.on("subscribe", () => {
    socket.join(room);
    if (!subscribed) {
      subscribed = true;
      if (!visitors.has(cid)) visitors.set(cid, new Set());
      const tabs = visitors.get(cid);
      tabs.add(socket);
      if (tabs.size === 1) for (const a of admins) a.emit("online", { cid: String(cid) });
    }
    const rows = messages.get(cid) ?? [];
    for (const row of rows.slice(-20)) socket.emit("new message", payload(row));
    if (rows.length > 20) socket.emit("add history button");
  });
  socket.on("new message", (data) => {
    deliver(store(cid, "0", 1, data?.message ?? ""));
  });
  socket.on("take history", (data) => {
    const mid = Number(data?.mid ?? 0);
    socket.emit("drop history button");
    const older = (messages.get(cid) ?? []).filter((r) => r.id < mid);
    for (const row of older.slice(-10).reverse()) socket.emit("new message history", payload(row));
    if (older.length > 10) socket.emit("add history button");
  });
  socket.on("disconnect", () => {
    const tabs = visitors.get(cid);
    if (!subscribed || !tabs) return;
    tabs.delete(socket);
    if (tabs.size === 0) {
      visitors.delete(cid);
      for (const a of admins) a.emit("offline", { cid: String(cid) });
    }
  });
}

function onAdmin(socket) {
  admins.add(socket);
  socket.on("subscribe:servadm", (data) => {
    if (typeof data?.room === "string") socket.join(data.room);
  });
  socket.on("new message:servadm", (data) => {
    const cid = Number(data?.username);
    if (!Number.isSafeInteger(cid) || cid <= 0) return;
    deliver(store(cid, String(data?.adm ?? ""), 2, data?.message ?? ""));
  });
  socket.on("update admlist", () => {});
  socket.on("disconnect", () => admins.delete(socket));
}

const http = createServer();
const io = new Server(http);
io.on("connection", (socket) => {
  const query = socket.handshake.query;
  if (adminName && query[adminName] === adminValue) return onAdmin(socket);
  const cid = Number(query.id);
  if (!query.id || !Number.isSafeInteger(cid) || cid <= 0 || query.room !== roomOf(query.id)) {
    socket.disconnect(true);
    return;
  }
  onVisitor(socket, cid);
});

http.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening port=${http.address().port}\n`);
});
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
