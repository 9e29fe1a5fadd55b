/*!
 * Socketgram chat widget. The server sends it at /widget.js right after the official
 * Socket.IO client, so a host page needs one tag:
 *
 *   <script src="https://chat.example.com/widget.js" data-token-url="/chat/token" async></script>
 *
 * Options (data-* attributes on that tag, or Socketgram.init({...}) from the page):
 *   token      data-token       a visitor token minted by the host site: v1.<cid>.<expiry>.<hmac>
 *   tokenUrl   data-token-url   or a URL answering JSON {token} (fetched again when it expires)
 *   url        data-url         the chat server (default: where this script was loaded from)
 *   title      data-title       the panel's heading (default "Chat with us")
 *   connect    data-connect     "open" (default: connect when the panel first opens) or "load"
 *   open       data-open        "true": open the panel at once
 *   maxChars   data-max-chars   the server's message limit (default 10000)
 *
 * API: Socketgram.init(options), .open(), .close(), .toggle(), .destroy(), .state()
 *
 * Message text is only ever inserted with textContent: whatever a visitor or an admin types
 * shows as text. Nothing but window.Socketgram is added to the page's globals.
 *
 * Files (the paperclip, a paste or a drop onto the panel) are uploaded as soon as they are
 * chosen: a ticket from the socket ('upload'), then the bytes in a POST to the ticket's URL on
 * the chat server; the message carries the ids of its uploaded files.
 *
 * "Continue in Telegram" shows when the server names a Telegram bot (the 'subscribe' answer's
 * telegram_bot): a one-time link to the bot ('telegram link') that connects the visitor's
 * Telegram chat to this conversation, no password typed.
 */
(function () {
  'use strict';

  if (window.Socketgram && window.Socketgram.version) {
    return; // the tag is on the page twice: the first copy is in charge
  }

  /**
   * The Socket.IO client the server put in front of this file: a `socketgramIo` of an
   * enclosing scope when the server wraps the two (keeping the page's own `io` alone),
   * else the global the client's UMD wrapper sets.
   */
  // eslint-disable-next-line no-undef
  const ioClient = typeof socketgramIo === 'function' ? socketgramIo : window.io;
  /** This script's tag: its src tells the server, its data-* attributes the options. */
  const ownScript = document.currentScript || lastScriptNamed('widget.js');

  const VERSION = '1';
  const DEFAULT_MAX_CHARS = 10000;
  /** How long an acknowledgement may take before the request counts as lost. */
  const ACK_TIMEOUT_MS = 10000;
  /** A token this close to its expiry is fetched again before connecting. */
  const TOKEN_MARGIN_MS = 60000;
  /** Failed connection attempts in a row after which the widget says it is offline. */
  const OFFLINE_AFTER_ATTEMPTS = 3;
  /** Refusals worth trying again after a pause: the same request may pass later (a message
   *  whose outcome is unknown is sent again with its client id, so it is never stored twice). */
  const TRANSIENT = new Set(['unavailable', 'outcome_unknown', 'rate_limited', 'internal']);
  /** Transient refusals of one message before it is shown as not sent (with "Try again"). */
  const MAX_TRANSIENT_REFUSALS = 5;
  /** The box (CSS pixels) an image's thumbnail is scaled into. */
  const THUMB_BOX = 240;

  let instance = null;

  function lastScriptNamed(name) {
    const scripts = document.getElementsByTagName('script');
    for (let i = scripts.length - 1; i >= 0; i--) {
      const src = scripts[i].getAttribute('src') || '';
      if (src.split('?')[0].endsWith(name)) return scripts[i];
    }
    return null;
  }

  /** sessionStorage / localStorage that may be missing or refuse (private modes, sandboxes). */
  function store(kind) {
    return {
      get(key) {
        try {
          return window[kind].getItem(key);
        } catch (_) {
          return null;
        }
      },
      set(key, value) {
        try {
          if (value === null) window[kind].removeItem(key);
          else window[kind].setItem(key, value);
        } catch (_) {
          /* storage is a nicety */
        }
      },
    };
  }
  const session = store('sessionStorage');
  const local = store('localStorage');

  /** Characters a text takes on the server once escaped for the legacy column. */
  function storedLength(text) {
    let n = 0;
    for (const ch of text) {
      if (ch === '&') n += 5;
      else if (ch === '<' || ch === '>') n += 4;
      else if (ch === '"' || ch === "'") n += 6;
      else n += 1;
    }
    return n;
  }

  function randomId() {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** Builds an element; strings become text nodes (never HTML). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (key === 'class') el.className = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      el.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return el;
  }

  /** An icon: a filled path, or with `stroked` a line drawn in the text's colour. */
  function svg(path, stroked) {
    const ns = 'http://www.w3.org/2000/svg';
    const el = document.createElementNS(ns, 'svg');
    el.setAttribute('viewBox', '0 0 24 24');
    el.setAttribute('aria-hidden', 'true');
    el.setAttribute('focusable', 'false');
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('d', path);
    if (stroked) {
      for (const [k, v] of [['fill', 'none'], ['stroke', 'currentColor'], ['stroke-width', '2'],
        ['stroke-linecap', 'round'], ['stroke-linejoin', 'round']]) p.setAttribute(k, v);
    }
    el.append(p);
    return el;
  }

  const PAPERCLIP = 'M15.5 6.5 8.4 13.6a1.5 1.5 0 0 0 2.1 2.1l7.4-7.4a3 3 0 0 0-4.2-4.2l-7.6 7.6a4.5 4.5 0 0 0 6.4 6.4l6-6';
  const DOCUMENT = 'M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5';
  const CROSS = 'M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z';
  /** A paper plane (Telegram). */
  const PLANE = 'M21.5 3.5 2.8 10.7c-.9.4-.9 1.6 0 1.9l4.6 1.6 1.8 5.6c.2.7 1.1.9 1.6.4l2.6-2.5 4.7 3.5c.6.4 1.4.1 1.6-.6l3.1-15.4c.2-1-.7-1.8-1.7-1.7zM9.6 14.1l8.2-7.3-6.6 8.6-.4 2.9z';

  /** A size as people read it, as the server writes it: "532 B", "12 KB", "1.4 MB". */
  function humanSize(bytes) {
    const n = Math.max(0, Number(bytes) || 0);
    if (n < 1024) return `${n} B`;
    const units = ['KB', 'MB', 'GB', 'TB'];
    let value = n / 1024;
    let unit = 0;
    while (value >= 1024 && unit + 1 < units.length) {
      value /= 1024;
      unit += 1;
    }
    return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
  }

  /** Width and height attributes that fit an image of w x h into THUMB_BOX (so the layout
   *  does not jump when it loads); none when the size is not known. */
  function thumbSize(w, h) {
    if (!(w > 0 && h > 0)) return {};
    const scale = Math.min(1, THUMB_BOX / w, THUMB_BOX / h);
    return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
  }

  /** Whether a file the browser calls `type` is worth uploading where the server takes
   *  `types`. Only a hint: the server tells the type from the content. Unknown types go up
   *  (the server decides), and so does any plain text, which it stores as text/plain. */
  function typeAccepted(type, types) {
    if (!type || !types) return true;
    if (types.includes(type)) return true;
    return types.includes('text/plain') && /^text\//.test(type) && !/html|xml/.test(type);
  }

  /** The files of a message from the wire, checked: [{id, name, type, size, width, height,
   *  url, thumbUrl}] (url and thumbUrl as the server gave them, still to be resolved). */
  function attachmentsOf(raw) {
    if (!Array.isArray(raw)) return [];
    return raw.filter((a) => a && typeof a === 'object' && a.id !== undefined && a.id !== null).map((a) => ({
      id: a.id,
      name: typeof a.name === 'string' && a.name ? a.name : 'file',
      type: typeof a.type === 'string' ? a.type : '',
      size: Number(a.size) || 0,
      width: Number(a.width) || 0,
      height: Number(a.height) || 0,
      url: typeof a.url === 'string' ? a.url : '',
      thumbUrl: typeof a.thumb_url === 'string' ? a.thumb_url : '',
    }));
  }

  /** Whether two lists of files hold the same ids in the same order. */
  function sameFiles(a, b) {
    return a.length === b.length && a.every((f, i) => String(f.id) === String(b[i].id));
  }

  /**
   * Where the server is: an origin for the socket and a path prefix for /socket.io/ (a
   * server behind a proxy may live under a path). `url` is the server's base URL, or with
   * `isScript` this script's own URL.
   */
  function serverOf(url, isScript) {
    const base = new URL(url, document.baseURI);
    let path = base.pathname;
    if (isScript) path = path.replace(/[^/]*$/, ''); // drop "widget.js"
    if (!path.endsWith('/')) path += '/';
    return { origin: base.origin, path };
  }

  /** `v1.<cid>.<expiry>.<hmac>` -> {cid, expiresAt}, without trusting it for anything else. */
  function readToken(token) {
    const parts = String(token).split('.');
    const expiry = Number(parts[2]);
    return { cid: parts[1] || '', expiresAt: Number.isFinite(expiry) ? expiry * 1000 : Infinity };
  }

  const STATUS_TEXT = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    online: 'Online',
    reconnecting: 'Reconnecting…',
    offline: 'Offline',
  };

  const CSS = `
:host { all: initial; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
.sg-root {
  --sg-accent: #2557d6; --sg-accent-text: #fff; --sg-bg: #fff; --sg-fg: #1b1f24;
  --sg-muted: #59636e; --sg-line: #d5d9de; --sg-their: #eef1f5; --sg-error: #b3261e;
  --sg-ok: #1a7f37; --sg-warn: #9a6700;
  font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--sg-fg);
}
@media (prefers-color-scheme: dark) {
  .sg-root { --sg-bg: #1c1f24; --sg-fg: #e8eaed; --sg-muted: #a4acb6; --sg-line: #3a3f47;
             --sg-their: #2a2f37; --sg-accent: #5b8cff; --sg-accent-text: #0b1020;
             --sg-error: #ff8a80; --sg-ok: #57d163; --sg-warn: #e3b341; }
}
button, textarea, progress { font: inherit; color: inherit; }
:focus-visible { outline: 3px solid var(--sg-accent); outline-offset: 2px; }
.sg-launcher {
  position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
  display: inline-flex; align-items: center; gap: 8px; min-height: 48px; padding: 0 18px;
  border: 0; border-radius: 24px; background: var(--sg-accent); color: var(--sg-accent-text);
  font-weight: 600; cursor: pointer; box-shadow: 0 4px 14px rgba(0,0,0,.25);
}
.sg-launcher:focus-visible { outline-color: var(--sg-fg); outline-offset: 3px; }
.sg-launcher svg { width: 22px; height: 22px; fill: currentColor; }
.sg-badge {
  min-width: 20px; height: 20px; padding: 0 6px; border-radius: 10px;
  background: var(--sg-error); color: #fff; font-size: 12px; line-height: 20px; text-align: center;
}
.sg-panel {
  position: fixed; right: 20px; bottom: 80px; z-index: 2147483001;
  width: 370px; height: min(600px, calc(100vh - 100px)); max-height: calc(100vh - 100px);
  display: flex; flex-direction: column; overflow: hidden;
  background: var(--sg-bg); border: 1px solid var(--sg-line); border-radius: 14px;
  box-shadow: 0 12px 40px rgba(0,0,0,.25);
}
.sg-head {
  display: flex; align-items: flex-start; justify-content: space-between; gap: 8px;
  padding: 12px 12px 10px 16px; background: var(--sg-accent); color: var(--sg-accent-text);
}
.sg-title { margin: 0; font-size: 17px; font-weight: 650; }
.sg-status { margin: 2px 0 0; font-size: 13px; display: flex; align-items: center; gap: 6px; }
.sg-dot { width: 9px; height: 9px; border-radius: 50%; background: #c5ccd6; flex: none;
          box-shadow: 0 0 0 2px rgba(255,255,255,.6); }
.sg-root[data-state="online"] .sg-dot { background: #3fd16a; }
.sg-root[data-state="connecting"] .sg-dot,
.sg-root[data-state="reconnecting"] .sg-dot { background: #f2c744; }
.sg-root[data-state="offline"] .sg-dot { background: #ff6b6b; }
.sg-close {
  flex: none; width: 40px; height: 40px; border: 0; border-radius: 8px; background: transparent;
  color: inherit; cursor: pointer; display: grid; place-items: center;
}
.sg-close:hover { background: rgba(255,255,255,.18); }
.sg-close:focus-visible { outline-color: var(--sg-accent-text); outline-offset: -3px; }
.sg-close svg { width: 22px; height: 22px; fill: currentColor; }
.sg-more-bar { padding: 8px 12px 0; text-align: center; }
.sg-more {
  border: 1px solid var(--sg-line); background: var(--sg-bg); border-radius: 16px;
  padding: 6px 14px; cursor: pointer; font-size: 13px;
}
.sg-more:disabled { cursor: progress; opacity: .7; }
.sg-log {
  flex: 1; overflow-y: auto; padding: 10px 12px 12px; display: flex; flex-direction: column;
  gap: 8px; overscroll-behavior: contain;
}
.sg-log:focus-visible { outline-offset: -3px; }
.sg-list, .sg-pending { display: flex; flex-direction: column; gap: 8px; }
.sg-empty { margin: auto 0; text-align: center; color: var(--sg-muted); font-size: 14px; }
.sg-msg { max-width: 85%; display: flex; flex-direction: column; gap: 2px; }
.sg-msg.sg-theirs { align-self: flex-start; }
.sg-msg.sg-own { align-self: flex-end; align-items: flex-end; }
.sg-meta { font-size: 12px; color: var(--sg-muted); display: flex; gap: 6px; }
.sg-who { font-weight: 600; }
.sg-cont { margin-top: -5px; }
.sg-cont .sg-meta { position: absolute; width: 1px; height: 1px; overflow: hidden;
                    clip-path: inset(50%); white-space: nowrap; }
.sg-text {
  padding: 8px 12px; border-radius: 14px; white-space: pre-wrap; overflow-wrap: anywhere;
  word-break: break-word;
}
.sg-theirs .sg-text { background: var(--sg-their); border-bottom-left-radius: 4px; }
.sg-own .sg-text { background: var(--sg-accent); color: var(--sg-accent-text);
                   border-bottom-right-radius: 4px; }
.sg-pending .sg-text { opacity: .75; }
.sg-files { display: flex; flex-direction: column; align-items: flex-start; gap: 4px; max-width: 100%; }
.sg-own .sg-files { align-items: flex-end; }
.sg-thumb {
  display: block; max-width: 100%; border: 1px solid var(--sg-line); border-radius: 12px;
  overflow: hidden; line-height: 0; background: var(--sg-their);
}
.sg-thumb img { display: block; max-width: 100%; height: auto; }
.sg-thumb:focus-visible { outline-offset: 1px; }
.sg-file {
  display: inline-flex; align-items: center; gap: 8px; max-width: 100%; padding: 6px 10px;
  border: 1px solid var(--sg-line); border-radius: 10px; background: var(--sg-bg);
  color: var(--sg-fg); text-decoration: none; font-size: 14px;
}
a.sg-file:hover .sg-file-name { text-decoration: underline; }
.sg-file svg, .sg-chip svg { width: 18px; height: 18px; flex: none; }
.sg-file-name, .sg-chip-name { min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.sg-file-size, .sg-chip-size { flex: none; font-size: 12px; color: var(--sg-muted); font-variant-numeric: tabular-nums; }
.sg-pending .sg-files { opacity: .75; }
.sg-tray {
  list-style: none; margin: 0 0 8px; padding: 0; display: flex; flex-direction: column; gap: 6px;
  max-height: 150px; overflow-y: auto;
}
.sg-chip {
  display: flex; flex-wrap: wrap; align-items: center; gap: 2px 8px; padding: 4px 4px 4px 10px;
  border: 1px solid var(--sg-line); border-radius: 10px; font-size: 14px;
}
.sg-chip-name { flex: 1; }
.sg-chip.sg-failed { border-color: var(--sg-error); }
.sg-chip progress { flex: 0 0 100%; height: 6px; margin: 2px 0 4px; accent-color: var(--sg-accent); }
.sg-chip-error { flex: 0 0 100%; margin: 0 0 4px; font-size: 12px; color: var(--sg-error); }
.sg-chip-retry {
  border: 0; background: none; padding: 2px; color: var(--sg-accent); cursor: pointer;
  text-decoration: underline; font-size: 12px;
}
.sg-chip-remove {
  flex: none; width: 32px; height: 32px; border: 0; border-radius: 8px; background: transparent;
  cursor: pointer; display: grid; place-items: center;
}
.sg-chip-remove:hover { background: var(--sg-their); }
.sg-chip-remove svg { fill: currentColor; }
.sg-attach {
  flex: none; width: 40px; height: 40px; border: 1px solid var(--sg-line); border-radius: 10px;
  background: var(--sg-bg); cursor: pointer; display: grid; place-items: center;
}
.sg-attach:hover { background: var(--sg-their); }
.sg-attach svg { width: 22px; height: 22px; }
.sg-drop {
  position: absolute; inset: 6px; z-index: 2; display: grid; place-items: center; padding: 24px;
  border: 3px dashed var(--sg-accent); border-radius: 12px; pointer-events: none;
  background: var(--sg-bg); background: color-mix(in srgb, var(--sg-bg) 92%, transparent);
  color: var(--sg-fg); font-weight: 600; text-align: center;
}
.sg-note { font-size: 12px; color: var(--sg-muted); display: flex; gap: 8px; align-items: center; }
.sg-failed .sg-note { color: var(--sg-error); }
.sg-seen { font-size: 12px; color: var(--sg-muted); }
.sg-typing { font-size: 12px; color: var(--sg-muted); font-style: italic; min-height: 16px;
             padding: 0 12px; }
.sg-note button {
  border: 0; background: none; padding: 2px; color: var(--sg-accent); cursor: pointer;
  text-decoration: underline; font-size: 12px;
}
.sg-alert {
  margin: 0; padding: 8px 14px; font-size: 13px; color: var(--sg-error);
  border-top: 1px solid var(--sg-line);
}
.sg-tg { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 10px; padding: 6px 12px; }
.sg-tg-button {
  display: inline-flex; align-items: center; gap: 6px; min-height: 40px; padding: 0 14px;
  border: 1px solid var(--sg-line); border-radius: 20px; background: var(--sg-bg);
  color: var(--sg-accent); font-size: 14px; font-weight: 600; cursor: pointer;
}
.sg-tg-button:hover { background: var(--sg-their); }
.sg-tg-button:disabled { cursor: not-allowed; opacity: .55; }
.sg-tg-button svg { width: 18px; height: 18px; flex: none; fill: currentColor; }
.sg-tg-note { font-size: 12px; color: var(--sg-muted); overflow-wrap: anywhere; }
.sg-tg-note.sg-tg-failed { color: var(--sg-error); }
.sg-tg-note a { color: var(--sg-accent); }
.sg-form { border-top: 1px solid var(--sg-line); padding: 8px 12px 12px; }
.sg-label { display: block; font-size: 13px; font-weight: 600; margin-bottom: 4px; }
.sg-input {
  display: block; width: 100%; min-height: 44px; max-height: 140px; resize: vertical;
  padding: 9px 11px; border: 1px solid var(--sg-line); border-radius: 10px;
  background: var(--sg-bg);
}
.sg-input:focus-visible { outline-offset: 0; border-color: var(--sg-accent); }
.sg-input[aria-invalid="true"] { border-color: var(--sg-error); }
.sg-row { display: flex; align-items: center; gap: 10px; margin-top: 8px; }
.sg-hint { flex: 1; font-size: 12px; color: var(--sg-muted); }
.sg-counter { margin-left: auto; font-size: 12px; color: var(--sg-muted); font-variant-numeric: tabular-nums; }
.sg-counter.sg-over { color: var(--sg-error); font-weight: 600; }
.sg-send {
  min-height: 40px; padding: 0 18px; border: 0; border-radius: 10px; cursor: pointer;
  background: var(--sg-accent); color: var(--sg-accent-text); font-weight: 600;
}
.sg-send:disabled { cursor: not-allowed; opacity: .45; }
.sg-vh { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
         clip-path: inset(50%); white-space: nowrap; }
@media (max-width: 480px), (max-height: 520px) {
  .sg-panel { inset: 0; width: 100%; height: 100%; max-height: none; border-radius: 0; border: 0; }
  .sg-input { font-size: 16px; }
  .sg-hint { display: none; }
  .sg-root[data-open="true"] .sg-launcher { display: none; }
}
@media (prefers-reduced-motion: no-preference) {
  .sg-panel { animation: sg-in .16s ease-out; }
  @keyframes sg-in { from { opacity: 0; transform: translateY(8px); } }
}
`;

  function optionsFromScript(script) {
    const d = (script && script.dataset) || {};
    return {
      url: d.url,
      token: d.token,
      tokenUrl: d.tokenUrl,
      title: d.title,
      connect: d.connect,
      open: d.open === 'true' || d.open === '',
      maxChars: d.maxChars ? Number(d.maxChars) : undefined,
    };
  }

  /** One chat widget on the page. */
  function createWidget(options) {
    const server = options.url
      ? serverOf(options.url, false)
      : serverOf((ownScript && ownScript.src) || '/', true);
    const tokenUrl = options.tokenUrl || null;
    const maxChars = Number.isInteger(options.maxChars) && options.maxChars > 0
      ? options.maxChars : DEFAULT_MAX_CHARS;
    const connectOn = options.connect === 'load' ? 'load' : 'open';

    /** The visitor's token; fetched from tokenUrl when absent or about to expire. */
    let token = options.token || null;
    /** Why the last token fetch failed (shown instead of the server's "no credentials"). */
    let tokenError = null;

    /** Messages by label (the message id): one copy each, whatever path brought it. */
    const messages = new Map();
    /** The labels in ascending order, matching the DOM order of the list. */
    const labels = [];
    /** Sends not yet confirmed by a message, in the order typed: {id, text, state, ...}. */
    let queue = [];
    let socket = null;
    let subscribed = false;
    // Whether the server shows support the draft while it is typed (told on subscribe).
    let typingPreview = false;
    /** The Telegram bot the server offers ("Continue in Telegram"; told on subscribe), and
     *  whether a link is being asked for. */
    let telegramBot = null;
    let telegramBusy = false;
    let everOnline = false;
    let failures = 0;
    let retryTimer = null;
    let retryDelay = 1000;
    let pumping = false;
    let historyLoading = false;
    let isOpen = false;
    let unread = 0;
    /** How far the server has been told the visitor has seen, and how far support has read. */
    let seenSent = 0;
    let supportRead = 0;
    /** The "Seen" line, under the visitor's newest message support has read. */
    const seen = h('div', { class: 'sg-seen', 'aria-live': 'polite' }, 'Seen');
    /** "Alice is typing", while support types (hidden when the event's time runs out). */
    const typingLine = h('p', { class: 'sg-typing', 'aria-live': 'polite', hidden: true });
    let typingTimer = null;
    /** When support was last told the visitor types, and whether it is told so now. */
    let typingSentAt = 0;
    let typingShown = false;
    let state = 'idle';
    let destroyed = false;
    /** Files chosen for the next message, in the order chosen: {file, name, size, state
     *  ('waiting' | 'uploading' | 'done' | 'failed'), progress, error, retry, xhr, attachment}. */
    let chosen = [];
    /** What the server takes ({maxBytes, maxFiles, types}), as the last ticket said; null
     *  before one came (the server may be set to take more than its defaults). */
    let fileLimits = null;
    /** dragenter minus dragleave over the panel: the drop target shows while above zero. */
    let dragDepth = 0;

    // ---- markup (in a shadow root: the host page's CSS and ours never meet) ----
    const host = h('div', { id: 'socketgram-widget', 'data-socketgram': VERSION });
    const shadow = host.attachShadow({ mode: 'open' });
    const style = h('style', {}, CSS);
    const launcherText = h('span', {}, 'Chat');
    const badge = h('span', { class: 'sg-badge', hidden: true });
    const launcher = h('button', {
      class: 'sg-launcher', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'sg-panel',
    }, svg('M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z'), launcherText,
    h('span', { class: 'sg-vh' }, ' with support'), badge);
    const statusText = h('span', { class: 'sg-status-text' }, STATUS_TEXT.idle);
    const status = h('p', { class: 'sg-status', role: 'status', 'aria-live': 'polite' },
      h('span', { class: 'sg-dot', 'aria-hidden': 'true' }), statusText);
    const closeButton = h('button', { class: 'sg-close', type: 'button', 'aria-label': 'Close chat' },
      svg(CROSS));
    const moreButton = h('button', { class: 'sg-more', type: 'button', hidden: true },
      'Load older messages');
    const moreBar = h('div', { class: 'sg-more-bar', hidden: true }, moreButton);
    const empty = h('p', { class: 'sg-empty' }, 'Ask us anything: we answer here.');
    const list = h('div', { class: 'sg-list' });
    const pendingList = h('div', { class: 'sg-pending' });
    const log = h('div', {
      class: 'sg-log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions',
      'aria-label': 'Messages', tabindex: '0',
    }, empty, list, pendingList);
    const alert = h('p', { class: 'sg-alert', role: 'alert', hidden: true });
    const telegramButton = h('button', { class: 'sg-tg-button', type: 'button' }, svg(PLANE),
      'Continue in Telegram', h('span', { class: 'sg-vh' }, ' (opens in a new tab)'));
    /** What happened to the last click (opening, refused), said without moving the focus. */
    const telegramNote = h('span', { class: 'sg-tg-note', role: 'status', 'aria-live': 'polite' });
    const telegramBar = h('div', { class: 'sg-tg', hidden: true }, telegramButton, telegramNote);
    const input = h('textarea', {
      class: 'sg-input', id: 'sg-input', rows: '2', 'aria-describedby': 'sg-counter sg-hint',
      autocomplete: 'off',
    });
    const counter = h('span', { class: 'sg-counter', id: 'sg-counter' });
    const sendButton = h('button', { class: 'sg-send', type: 'submit', disabled: true }, 'Send');
    const hint = h('span', { class: 'sg-hint', id: 'sg-hint' });
    const attachButton = h('button', { class: 'sg-attach', type: 'button', 'aria-label': 'Attach files' },
      svg(PAPERCLIP, true));
    // Opened by the paperclip only: out of the focus order and of the accessibility tree.
    const fileInput = h('input', { type: 'file', multiple: true, hidden: true, tabindex: '-1' });
    /** The chosen files, above the text box. */
    const tray = h('ul', { class: 'sg-tray', 'aria-label': 'Files to send', hidden: true });
    /** Says what happened to a file (uploaded, refused) without moving the focus. */
    const filesStatus = h('p', { class: 'sg-vh', role: 'status', 'aria-live': 'polite' });
    const form = h('form', { class: 'sg-form', novalidate: true },
      tray,
      h('label', { class: 'sg-label', for: 'sg-input' }, 'Your message'),
      input,
      h('div', { class: 'sg-row' }, attachButton, hint, counter, sendButton),
      fileInput, filesStatus);
    const drop = h('div', { class: 'sg-drop', hidden: true, 'aria-hidden': 'true' }, 'Drop files here to attach them');
    const title = h('h2', { class: 'sg-title', id: 'sg-title' }, options.title || 'Chat with us');
    const panel = h('section', {
      class: 'sg-panel', id: 'sg-panel', role: 'dialog', 'aria-modal': 'false',
      'aria-labelledby': 'sg-title', hidden: true,
    }, h('header', { class: 'sg-head' }, h('div', {}, title, status), closeButton),
    moreBar, log, typingLine, telegramBar, alert, form, drop);
    const root = h('div', { class: 'sg-root', 'data-state': state, 'data-open': 'false' },
      launcher, panel);
    shadow.append(style, root);

    // ---- storage keys are per visitor: a token for another visitor starts afresh ----
    const visitorKey = () => (token ? readToken(token).cid : '');
    const queueKey = () => `socketgram:queue:${server.origin}:${visitorKey()}`;
    const readKey = () => `socketgram:read:${server.origin}:${visitorKey()}`;
    const OPEN_KEY = `socketgram:open:${server.origin}`;
    let lastRead = 0;

    function saveQueue() {
      if (!visitorKey()) return;
      // A message's uploaded files go with it: their ids are what the server attaches.
      const waiting = queue.filter((q) => q.state !== 'sent').map((q) => (q.attachments.length
        ? { id: q.id, text: q.text, attachments: q.attachments.map(fileMeta) }
        : { id: q.id, text: q.text }));
      session.set(queueKey(), waiting.length ? JSON.stringify(waiting) : null);
    }

    function resetConversation() {
      messages.clear();
      labels.length = 0;
      list.replaceChildren();
      for (const item of queue) item.el.remove();
      queue = [];
      clearChosen(); // another visitor's uploads would be refused in this conversation
      setMoreVisible(false);
      setUnread(0);
      seenSent = 0;
      supportRead = 0;
      seen.remove();
      empty.hidden = false;
    }

    function restoreVisitorState() {
      lastRead = Number(local.get(readKey())) || 0;
      let saved = [];
      try {
        saved = JSON.parse(session.get(queueKey()) || '[]');
      } catch (_) {
        saved = [];
      }
      if (!Array.isArray(saved)) return;
      for (const s of saved) {
        if (s && typeof s.id === 'string' && typeof s.text === 'string' && !queue.some((q) => q.id === s.id)) {
          enqueue(s.text, s.id, attachmentsOf(s.attachments).map(fileMeta));
        }
      }
    }

    // ---- connection state ----
    function setState(next, detail) {
      state = next;
      root.dataset.state = next;
      const text = STATUS_TEXT[next] + (detail ? ` — ${detail}` : '');
      if (statusText.textContent !== text) statusText.textContent = text;
      updateSend();
      updateTelegram();
    }

    function showAlert(text) {
      alert.textContent = text || '';
      alert.hidden = !text;
    }

    function scheduleRetry(fn) {
      clearTimeout(retryTimer);
      const delay = retryDelay * (0.5 + Math.random() / 2);
      retryDelay = Math.min(retryDelay * 2, 30000);
      retryTimer = setTimeout(() => {
        retryTimer = null;
        if (!destroyed) fn();
      }, delay);
    }

    async function currentToken() {
      const fresh = token && readToken(token).expiresAt - Date.now() > TOKEN_MARGIN_MS;
      if (fresh || (token && !tokenUrl)) return token;
      if (!tokenUrl) throw new Error('no visitor token was given to the chat widget');
      const before = visitorKey();
      const response = await fetch(tokenUrl, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (!response.ok) throw new Error(`the token URL answered ${response.status}`);
      const body = await response.json();
      if (!body || typeof body.token !== 'string' || !body.token) {
        throw new Error('the token URL did not return {token}');
      }
      token = body.token;
      if (visitorKey() !== before) {
        // Another visitor now (the host site's login changed): start that conversation afresh.
        if (before) resetConversation();
        restoreVisitorState();
      }
      return token;
    }

    function connect() {
      if (socket || destroyed) return;
      if (typeof ioClient !== 'function') {
        setState('offline', 'the Socket.IO client did not load');
        return;
      }
      setState('connecting');
      socket = ioClient(server.origin, {
        path: `${server.path}socket.io`,
        transports: ['websocket', 'polling'],
        forceNew: true, // never share a connection with the host page's own Socket.IO use
        reconnectionDelay: 1000,
        reconnectionDelayMax: 10000,
        // Asked at every (re)connection, so an expired token is replaced first.
        auth: (reply) => {
          currentToken().then(
            (t) => { tokenError = null; reply({ token: t }); },
            (e) => { tokenError = e.message; reply({}); },
          );
        },
      });
      socket.on('connect', onConnect);
      socket.on('connect_error', onConnectError);
      socket.on('disconnect', onDisconnect);
      socket.on('new message', (m) => receive(m, true));
      socket.on('new message history', (m) => receive(m, false));
      socket.on('add history button', () => setMoreVisible(true));
      socket.on('drop history button', () => setMoreVisible(false));
      socket.on('chat error', onChatError);
      socket.on('read', onRead);
      socket.on('typing', onTyping);
    }

    function onConnect() {
      failures = 0;
      subscribed = false;
      subscribe();
    }

    function subscribe() {
      const s = socket;
      const newest = labels.length ? labels[labels.length - 1] : 0;
      // Resume after the newest message seen: the server sends everything after it, in
      // order, so nothing is lost while away and nothing arrives twice.
      const payload = newest > 0 ? { since: newest } : {};
      const page = pageContext();
      if (Object.keys(page).length) payload.page = page;
      s.timeout(ACK_TIMEOUT_MS).emitWithAck('subscribe', payload).then((reply) => {
        if (s !== socket || !s.connected) return;
        if (reply && reply.data) {
          subscribed = true;
          typingPreview = reply.data.typing_preview === true;
          const bot = reply.data.telegram_bot;
          telegramBot = typeof bot === 'string' && /^[A-Za-z0-9_]{5,32}$/.test(bot) ? bot : null;
          everOnline = true;
          retryDelay = 1000;
          showAlert('');
          setState('online');
          pump();
          startUploads();
          if (isOpen) tellSeen();
          return;
        }
        const error = (reply && reply.error) || {};
        if (TRANSIENT.has(error.code)) {
          scheduleRetry(() => { if (s === socket && s.connected && !subscribed) subscribe(); });
        } else {
          setState('offline', error.message || 'the server refused the conversation');
          s.disconnect();
        }
      }, () => {
        // No answer in time: start over on a fresh connection rather than subscribe twice.
        if (s === socket && s.connected) restart();
      });
    }

    /**
     * What this page reports of itself for support (shown as unverified), within the server's
     * bounds: a part the server would refuse is left out rather than sent.
     */
    function pageContext() {
      const page = {};
      // Control characters out, at most `max` code points (the server counts them so).
      const clip = (text, max) => Array.from(String(text || '').replace(/[\u0000-\u001f\u007f-\u009f]/g, ' '))
        .slice(0, max).join('');
      if (/^https?:\/\//i.test(location.href)) page.url = clip(location.href, 2048);
      if (document.title) page.title = clip(document.title, 300);
      const language = navigator.language || '';
      if (/^[A-Za-z0-9-]{1,35}$/.test(language)) page.language = language;
      let zone = '';
      try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (_) { zone = ''; }
      if (/^[A-Za-z0-9_+\/-]{1,64}$/.test(zone)) page.time_zone = zone;
      return page;
    }

    /** Drops a connection that stopped answering and opens a new one (which resumes). */
    function restart() {
      subscribed = false;
      setState('reconnecting');
      socket.disconnect().connect();
    }

    function onConnectError(err) {
      subscribed = false;
      failures += 1;
      const reason = tokenError || (err && err.message) || 'cannot connect';
      if (socket && socket.active) {
        // A network problem: the client tries again by itself.
        if (!navigator.onLine) setState('offline', 'no network');
        else if (failures >= OFFLINE_AFTER_ATTEMPTS) setState('offline', 'cannot reach the chat server; retrying');
        else setState(everOnline ? 'reconnecting' : 'connecting');
        return;
      }
      // The server refused the handshake (bad or expired token, too many connections).
      if (tokenUrl) {
        token = null; // a fresh token may fix it
        setState('offline', `${reason}; retrying`);
        scheduleRetry(() => socket && socket.connect());
      } else if (/too many/.test(reason)) {
        setState('offline', `${reason}; retrying`);
        scheduleRetry(() => socket && socket.connect());
      } else {
        setState('offline', reason);
      }
    }

    function onDisconnect(reason) {
      subscribed = false;
      if (destroyed || reason === 'io client disconnect') return;
      if (historyLoading) {
        historyLoading = false;
        moreButton.disabled = false;
        setMoreVisible(true);
      }
      if (navigator.onLine === false) setState('offline', 'no network');
      else setState('reconnecting');
      if (reason === 'io server disconnect') {
        // The server closed the connection (a restart): the client does not retry alone.
        scheduleRetry(() => socket && !socket.connected && socket.connect());
      }
    }

    function onChatError(error) {
      if (!error || typeof error !== 'object') return;
      // A refused message is shown on the message itself (its acknowledgement says why).
      if (error.event === 'new message') return;
      showAlert(String(error.message || error.code || 'the server refused a request'));
    }

    // ---- messages ----
    function isOwn(adm) {
      return String(adm) === '0';
    }

    function shortDate(date) {
      const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})/.exec(date);
      if (!m) return date;
      const now = new Date();
      const today = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
      return m[1] === today ? m[2] : `${m[1]} ${m[2]}`;
    }

    function messageElement(m) {
      const own = isOwn(m.adm);
      const datetime = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?$/.test(m.date) ? m.date : null;
      return h('div', { class: `sg-msg ${own ? 'sg-own' : 'sg-theirs'}`, 'data-label': m.label },
        h('div', { class: 'sg-meta' },
          h('span', { class: 'sg-who' }, own ? 'You' : m.adm),
          m.date ? h('time', { datetime, title: m.date }, shortDate(m.date)) : null),
        m.attachments.length ? filesElement(m.attachments) : null,
        // Files alone make no empty bubble.
        m.text || !m.attachments.length ? h('div', { class: 'sg-text' }, m.text) : null);
    }

    /** A path the chat server gave (`/files/...`), resolved under its base URL as /socket.io/
     *  is; an http(s) URL as it is; null for anything else (never javascript:). */
    function serverUrl(path) {
      if (typeof path !== 'string' || !path) return null;
      if (/^\/(?!\/)/.test(path)) return `${server.origin}${server.path}${path.slice(1)}`;
      try {
        const url = new URL(path);
        return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
      } catch (_) {
        return null;
      }
    }

    /** A message's files: an image with a thumbnail as that thumbnail, linked to the file;
     *  anything else as a chip with its name and size (a link where the server gave one). */
    function filesElement(list) {
      return h('div', { class: 'sg-files' }, ...list.map((a) => {
        const href = serverUrl(a.url);
        const thumb = serverUrl(a.thumbUrl);
        if (href && thumb) {
          return h('a', { class: 'sg-thumb', href, target: '_blank', rel: 'noopener' },
            h('img', Object.assign({ src: thumb, alt: a.name, loading: 'lazy', decoding: 'async' },
              thumbSize(a.width, a.height))));
        }
        const parts = [svg(DOCUMENT, true), h('span', { class: 'sg-file-name' }, a.name),
          h('span', { class: 'sg-file-size' }, humanSize(a.size))];
        // A new tab even where `download` does not apply (another origin): the page the chat
        // is on stays.
        return href
          ? h('a', { class: 'sg-file', href, download: a.name, target: '_blank', rel: 'noopener' }, ...parts)
          : h('span', { class: 'sg-file' }, ...parts);
      }));
    }

    /** A message right after one of the same author in the same minute shows no header. */
    function regroup(index) {
      if (index <= 0 || index >= labels.length) return;
      const m = messages.get(labels[index]);
      const prev = messages.get(labels[index - 1]);
      const same = m.adm === prev.adm && m.date.slice(0, 16) === prev.date.slice(0, 16);
      m.el.classList.toggle('sg-cont', same);
    }

    function nearBottom() {
      return log.scrollHeight - log.scrollTop - log.clientHeight < 48;
    }

    function scrollToBottom() {
      log.scrollTop = log.scrollHeight;
    }

    /** Index of the first label greater than `label`. */
    function insertionIndex(label) {
      let lo = 0;
      let hi = labels.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (labels[mid] < label) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    }

    function receive(raw, live) {
      if (!raw || typeof raw !== 'object') return;
      const label = Number(raw.label);
      if (!Number.isSafeInteger(label) || label <= 0) return;
      const m = {
        label,
        text: typeof raw.message === 'string' ? raw.message : String(raw.message ?? ''),
        adm: raw.adm === undefined || raw.adm === null ? '0' : String(raw.adm),
        date: typeof raw.date === 'string' ? raw.date : '',
        attachments: attachmentsOf(raw.attachments),
      };
      settlePending(m, live);
      if (live && !isOwn(m.adm)) {
        // Support's message came: it has stopped typing.
        clearTimeout(typingTimer);
        typingLine.hidden = true;
      }
      if (messages.has(label)) return;
      const stick = nearBottom();
      const before = log.scrollHeight;
      const at = insertionIndex(label);
      const el = messageElement(m);
      m.el = el;
      messages.set(label, m);
      labels.splice(at, 0, label);
      const next = at + 1 < labels.length ? messages.get(labels[at + 1]).el : null;
      list.insertBefore(el, next);
      regroup(at);
      regroup(at + 1);
      empty.hidden = true;
      if (next === null) {
        if (stick || isOwn(m.adm)) scrollToBottom();
      } else {
        // An older message went above: keep what the reader is looking at in place.
        log.scrollTop += log.scrollHeight - before;
      }
      if (!isOwn(m.adm) && label > lastRead) {
        if (isOpen) markRead();
        else if (live) setUnread(unread + 1);
      }
      if (label <= supportRead) showSeen(supportRead);
    }

    function setUnread(n) {
      unread = n;
      badge.hidden = n === 0;
      badge.textContent = n ? String(n) : '';
      launcher.setAttribute('aria-label', n ? `Chat with support, ${n} unread` : 'Chat with support');
    }

    function markRead() {
      const newest = labels.length ? labels[labels.length - 1] : 0;
      if (newest > lastRead) {
        lastRead = newest;
        local.set(readKey(), String(newest));
      }
      setUnread(0);
      tellSeen();
    }

    /** Tells support how far the visitor has seen (the panel is open); the answer carries
     *  how far support has read. */
    function tellSeen() {
      const newest = labels.length ? labels[labels.length - 1] : 0;
      const s = socket;
      if (!s || !s.connected || !subscribed || newest <= seenSent) return;
      seenSent = newest;
      s.timeout(ACK_TIMEOUT_MS).emitWithAck('mark read', { mid: newest }).then((reply) => {
        if (reply && reply.data) showSeen(Number(reply.data.support_read_up_to));
        else if (seenSent === newest) seenSent = 0;
      }, () => { if (seenSent === newest) seenSent = 0; });
    }

    function onRead(mark) {
      if (mark && mark.reader === 'support') showSeen(Number(mark.mid));
    }

    /** Puts "Seen" under the visitor's newest message with an id up to support's mark. */
    function showSeen(mark) {
      if (!Number.isSafeInteger(mark) || mark < supportRead) return;
      supportRead = mark;
      for (let i = labels.length - 1; i >= 0; i--) {
        const m = messages.get(labels[i]);
        if (labels[i] <= supportRead && isOwn(m.adm)) {
          if (seen.parentNode !== m.el) m.el.appendChild(seen);
          return;
        }
      }
    }

    // ---- typing, both ways (never stored: a missed event only hides a hint) ----
    function onTyping(t) {
      if (!t || t.typist !== 'support') return;
      clearTimeout(typingTimer);
      if (!t.active) {
        typingLine.hidden = true;
        return;
      }
      const name = typeof t.name === 'string' && t.name ? t.name : 'Support';
      typingLine.textContent = `${name} is typing…`;
      typingLine.hidden = false;
      const ms = Number(t.shown_for_ms) > 0 ? Number(t.shown_for_ms) : 6000;
      typingTimer = setTimeout(() => { typingLine.hidden = true; }, ms);
    }

    /** Tells support the visitor types: the draft's length, never its text; at most one
     *  "still typing" per two seconds, and once when the draft is sent or cleared. */
    function tellTyping() {
      const s = socket;
      if (!s || !s.connected || !subscribed) return;
      const chars = input.value.trim() ? storedLength(input.value) : 0;
      const now = Date.now();
      if (chars > 0 && typingShown && now - typingSentAt < 2000) return;
      if (chars === 0 && !typingShown) return;
      typingShown = chars > 0;
      typingSentAt = now;
      // With an acknowledgement: a refusal (a flood) is answered there, not as an alert.
      // The draft itself only where the server shows it to support (`[core] typing_preview`,
      // told in the subscribe answer); otherwise support learns its length alone.
      const payload = typingPreview && chars > 0
        ? { chars, draft: Array.from(input.value).slice(0, maxChars).join('') }
        : { chars };
      s.timeout(ACK_TIMEOUT_MS).emitWithAck('typing', payload).catch(() => {});
    }

    // ---- sending: a queue that survives disconnections and reloads ----
    function pendingElement(item) {
      const note = h('div', { class: 'sg-note' });
      const el = h('div', { class: 'sg-msg sg-own' },
        item.attachments.length ? filesElement(item.attachments) : null,
        item.text || !item.attachments.length ? h('div', { class: 'sg-text' }, item.text) : null, note);
      item.el = el;
      item.note = note;
      return el;
    }

    function renderPending(item) {
      item.el.classList.toggle('sg-failed', item.state === 'failed');
      const notes = {
        queued: item.error ? `Waiting to send again: ${item.error}` : 'Waiting for the connection…',
        sending: 'Sending…',
        sent: 'Sent',
        failed: `Not sent: ${item.error || 'refused'}`,
      };
      item.note.replaceChildren(h('span', {}, notes[item.state]));
      if (item.state === 'failed') {
        const retry = h('button', { type: 'button' }, 'Try again');
        retry.addEventListener('click', () => {
          item.state = 'queued';
          item.error = null;
          item.refusals = 0;
          renderPending(item);
          saveQueue();
          input.focus();
          pump();
        });
        const discard = h('button', { type: 'button' }, 'Discard');
        discard.addEventListener('click', () => {
          removePending(item);
          input.focus();
        });
        item.note.append(retry, discard);
      }
    }

    /** A message to send: its text and its uploaded files ({id, name, type, size, ...}). */
    function enqueue(text, id, attachments) {
      const item = {
        id: id || randomId(), text, attachments: attachments || [], state: 'queued', error: null,
        label: null, matched: false,
      };
      queue.push(item);
      pendingList.append(pendingElement(item));
      renderPending(item);
      empty.hidden = true;
      scrollToBottom();
      saveQueue();
      return item;
    }

    function removePending(item) {
      queue = queue.filter((q) => q !== item);
      item.el.remove();
      saveQueue();
      if (!messages.size && !queue.length) empty.hidden = false;
    }

    /** A message arrived: the send it confirms is done. */
    function settlePending(m, live) {
      if (!isOwn(m.adm)) return;
      const byLabel = queue.find((q) => q.label === m.label);
      if (byLabel) {
        removePending(byLabel);
        return;
      }
      // Our message may arrive just before its acknowledgement: hide the pending copy now
      // (the acknowledgement removes it; a refusal would show it again).
      const byText = live && queue.find((q) => q.state === 'sending' && !q.matched && q.text === m.text
        && sameFiles(q.attachments, m.attachments));
      if (byText) {
        byText.matched = true;
        byText.el.hidden = true;
      }
    }

    async function pump() {
      if (pumping) return;
      pumping = true;
      try {
        for (;;) {
          const s = socket;
          const item = queue.find((q) => q.state === 'queued');
          if (!item || !s || !s.connected || !subscribed) return;
          item.state = 'sending';
          renderPending(item);
          let reply;
          try {
            // The same client_msg_id on every try: the server stores the message once.
            const payload = { message: item.text, client_msg_id: item.id };
            if (item.attachments.length) payload.attachments = item.attachments.map((a) => a.id);
            reply = await s.timeout(ACK_TIMEOUT_MS).emitWithAck('new message', payload);
          } catch (_) {
            // Lost with the connection, or no answer: send it again once connected.
            if (queue.includes(item)) {
              item.state = 'queued';
              item.matched = false;
              item.el.hidden = false;
              renderPending(item);
            }
            if (s === socket && s.connected) restart(); // a silent connection: start over
            return;
          }
          if (!queue.includes(item)) continue;
          if (reply && reply.data && Number.isSafeInteger(Number(reply.data.label))) {
            item.label = Number(reply.data.label);
            if (messages.has(item.label) || item.matched) {
              removePending(item);
            } else {
              item.state = 'sent'; // shown until the message itself arrives
              renderPending(item);
              saveQueue();
            }
            continue;
          }
          const error = (reply && reply.error) || {};
          item.matched = false;
          item.el.hidden = false;
          item.refusals = (item.refusals || 0) + 1;
          if (TRANSIENT.has(error.code) && item.refusals < MAX_TRANSIENT_REFUSALS) {
            item.state = 'queued';
            item.error = error.message;
            renderPending(item);
            await new Promise((resolve) => setTimeout(resolve, 1500 + Math.random() * 1500));
          } else {
            item.state = 'failed';
            item.error = error.message || error.code || 'refused by the server';
            renderPending(item);
            saveQueue();
          }
        }
      } finally {
        pumping = false;
        // A connection that came back while this pump was unwinding found it busy.
        if (subscribed && socket && socket.connected && queue.some((q) => q.state === 'queued')) {
          setTimeout(pump, 0);
        }
      }
    }

    function updateSend() {
      const text = input.value;
      const used = storedLength(text);
      const over = used > maxChars;
      counter.textContent = over
        ? `${used.toLocaleString('en')} / ${maxChars.toLocaleString('en')}: too long`
        : `${used.toLocaleString('en')} / ${maxChars.toLocaleString('en')}`;
      counter.classList.toggle('sg-over', over);
      input.setAttribute('aria-invalid', over ? 'true' : 'false');
      const uploading = chosen.some((f) => f.state === 'waiting' || f.state === 'uploading');
      const ready = chosen.some((f) => f.state === 'done');
      // Send waits while a file uploads rather than sending without it: the message carries
      // its files' ids, which exist only once their uploads are done. The hint says so.
      sendButton.disabled = state !== 'online' || over || uploading || (!text.trim() && !ready);
      hint.textContent = uploading ? 'Send is ready once the files have uploaded'
        : 'Enter to send, Shift+Enter for a new line';
    }

    function send() {
      updateSend();
      if (sendButton.disabled) return;
      const ready = chosen.filter((f) => f.state === 'done');
      const text = input.value.replace(/\0/g, '');
      enqueue(text.trim() ? text : '', null, ready.map((f) => f.attachment));
      // The files went with the message; a refused one stays, saying why, until removed.
      for (const f of ready) f.el.remove();
      chosen = chosen.filter((f) => f.state !== 'done');
      tray.hidden = !chosen.length;
      input.value = '';
      updateSend();
      tellTyping();
      pump();
    }

    // ---- files: uploaded as soon as chosen, then sent with the next message ----
    /** What a message keeps of an uploaded file (and the offline queue stores). */
    function fileMeta(a) {
      return { id: a.id, name: a.name, type: a.type, size: a.size, width: a.width, height: a.height };
    }

    function addFiles(list) {
      for (const file of Array.from(list || [])) {
        const item = {
          file, name: file.name || 'file', size: file.size, state: 'waiting', progress: 0, error: '',
          retry: false, xhr: null, attachment: null,
        };
        chosen.push(item);
        item.el = chipElement(item);
        tray.append(item.el);
        tray.hidden = false;
        const why = refusal(item);
        if (why) fail(item, why, false);
        else upload(item);
      }
      updateSend();
    }

    /** Why `item` cannot go with the message, by the server's limits as last told; or null
     *  (also before any ticket: the first ticket's answer is checked again). */
    function refusal(item) {
      if (item.size === 0) return `${item.name} is empty`;
      if (!fileLimits) return null;
      const { maxBytes, maxFiles, types } = fileLimits;
      if (chosen.filter((f) => f.state !== 'failed').indexOf(item) >= maxFiles) {
        return `${item.name}: at most ${maxFiles} ${maxFiles === 1 ? 'file goes' : 'files go'} with one message`;
      }
      if (item.size > maxBytes) return `${item.name} is larger than ${humanSize(maxBytes)}`;
      if (!typeAccepted(item.file.type, types)) return `${item.name}: this type of file is not accepted`;
      return null;
    }

    /** A pending file: its name and size, a progress bar while it uploads, why it was
     *  refused, and a remove button (plus "Try again" after a failure that may pass later). */
    function chipElement(item) {
      item.progressEl = h('progress', { max: '100', 'aria-label': `Uploading ${item.name}` });
      item.errorEl = h('p', { class: 'sg-chip-error', hidden: true });
      item.retryEl = h('button', {
        class: 'sg-chip-retry', type: 'button', hidden: true, 'aria-label': `Try again: ${item.name}`,
      }, 'Try again');
      item.retryEl.addEventListener('click', () => {
        upload(item);
        input.focus();
      });
      const remove = h('button', { class: 'sg-chip-remove', type: 'button', 'aria-label': `Remove ${item.name}` },
        svg(CROSS));
      remove.addEventListener('click', () => removeChosen(item, true));
      return h('li', { class: 'sg-chip', 'data-state': item.state }, svg(DOCUMENT, true),
        h('span', { class: 'sg-chip-name' }, item.name), h('span', { class: 'sg-chip-size' }, humanSize(item.size)),
        item.retryEl, remove, item.progressEl, item.errorEl);
    }

    function renderChip(item) {
      item.el.dataset.state = item.state;
      if (item.attachment) item.el.dataset.fileId = String(item.attachment.id);
      item.el.classList.toggle('sg-failed', item.state === 'failed');
      const busy = item.state === 'waiting' || item.state === 'uploading';
      item.progressEl.hidden = !busy;
      // Waiting for the connection: an indeterminate bar (no value).
      if (item.state === 'uploading') item.progressEl.value = Math.round(item.progress * 100);
      else item.progressEl.removeAttribute('value');
      item.errorEl.textContent = item.error;
      item.errorEl.hidden = !item.error;
      item.retryEl.hidden = !(item.state === 'failed' && item.retry);
    }

    function fail(item, text, retry) {
      Object.assign(item, { state: 'failed', error: text, retry, progress: 0 });
      renderChip(item);
      filesStatus.textContent = text;
      updateSend();
    }

    /** A ticket, then the bytes. Without a subscribed connection the file waits for one. */
    async function upload(item) {
      const s = socket;
      if (!s || !s.connected || !subscribed) {
        Object.assign(item, { state: 'waiting', error: '', retry: false });
        renderChip(item);
        updateSend();
        return;
      }
      Object.assign(item, { state: 'uploading', progress: 0, error: '', retry: false });
      renderChip(item);
      updateSend();
      let reply;
      try {
        reply = await s.timeout(ACK_TIMEOUT_MS).emitWithAck('upload', { name: item.name, size: item.size });
      } catch (_) {
        if (!chosen.includes(item)) return;
        if (s === socket && s.connected) fail(item, `${item.name}: the server did not answer in time`, true);
        else upload(item); // lost with the connection: waits for the next one
        return;
      }
      if (!chosen.includes(item)) return; // removed meanwhile
      const data = reply && reply.data;
      if (!data) {
        uploadFailed(item, 0, (reply && reply.error) || {});
        return;
      }
      readLimits(data);
      const why = refusal(item);
      const url = serverUrl(data.url);
      if (why || !url) fail(item, why || `${item.name}: the server gave no address to upload to`, false);
      else post(item, url);
    }

    function readLimits(data) {
      const maxBytes = Number(data.max_bytes);
      const maxFiles = Number(data.max_files);
      const types = Array.isArray(data.types) ? data.types.filter((t) => typeof t === 'string' && t) : [];
      fileLimits = {
        maxBytes: maxBytes > 0 ? maxBytes : Infinity,
        maxFiles: Number.isSafeInteger(maxFiles) && maxFiles > 0 ? maxFiles : Infinity,
        types: types.length ? types : null,
      };
      // The picker offers what the server takes (the visitor may still choose "all files").
      if (fileLimits.types) fileInput.accept = fileLimits.types.join(',');
    }

    /** The file itself, as the body of a POST to the ticket's URL (the ticket is the URL's: no
     *  cookies go with it). */
    function post(item, url) {
      const xhr = new XMLHttpRequest();
      item.xhr = xhr;
      xhr.open('POST', url);
      xhr.responseType = 'json';
      xhr.upload.addEventListener('progress', (e) => {
        if (item.xhr !== xhr || !e.lengthComputable || !e.total) return;
        item.progress = e.loaded / e.total;
        renderChip(item);
      });
      xhr.addEventListener('load', () => {
        if (item.xhr !== xhr) return;
        item.xhr = null;
        const body = xhr.response && typeof xhr.response === 'object' ? xhr.response : {};
        const data = body.data;
        if (xhr.status !== 201 || !data || data.id === undefined || data.id === null) {
          uploadFailed(item, xhr.status, body.error || {});
          return;
        }
        item.attachment = {
          id: data.id,
          name: typeof data.name === 'string' && data.name ? data.name : item.name,
          type: typeof data.type === 'string' ? data.type : '',
          size: Number(data.size) || item.size,
          width: Number(data.width) || 0,
          height: Number(data.height) || 0,
        };
        Object.assign(item, { state: 'done', progress: 1 });
        renderChip(item);
        filesStatus.textContent = `${item.name} uploaded`;
        updateSend();
      });
      xhr.addEventListener('error', () => {
        if (item.xhr !== xhr) return;
        item.xhr = null;
        fail(item, `${item.name}: the upload did not reach the chat server`, true);
      });
      xhr.send(item.file);
    }

    /** A refused ticket (`status` 0) or upload: why, in the words the visitor chose it by. */
    function uploadFailed(item, status, error) {
      const code = error.code;
      if ((status === 413 || code === 'too_large') && fileLimits && fileLimits.maxBytes < Infinity) {
        fail(item, `${item.name} is larger than ${humanSize(fileLimits.maxBytes)}`, false);
      } else if (status === 415 || code === 'type_not_allowed') {
        fail(item, `${item.name}: this type of file is not accepted`, false);
      } else if (status === 401 || status === 403) {
        // The ticket was refused (most likely expired): a new one is asked on "Try again".
        fail(item, `${item.name}: the upload took too long to start; try again`, true);
      } else {
        const why = String(error.message || code || `the server answered ${status}`);
        // The server's words may name the file already ("big.zip is larger than 10 MB").
        fail(item, why.startsWith(item.name) ? why : `${item.name}: ${why}`,
          status >= 500 || code === 'truncated' || TRANSIENT.has(code));
      }
    }

    function removeChosen(item, moveFocus) {
      const at = chosen.indexOf(item);
      if (at < 0) return;
      if (item.xhr) {
        const xhr = item.xhr;
        item.xhr = null;
        xhr.abort();
      }
      chosen.splice(at, 1);
      item.el.remove();
      tray.hidden = !chosen.length;
      if (moveFocus) {
        const next = chosen[at] || chosen[at - 1];
        (next ? next.el.querySelector('.sg-chip-remove') : input).focus();
      }
      updateSend();
    }

    function clearChosen() {
      for (const item of [...chosen]) removeChosen(item, false);
    }

    /** Uploads that waited for the connection. */
    function startUploads() {
      for (const item of chosen) if (item.state === 'waiting') upload(item);
    }

    const carriesFiles = (e) => Boolean(e.dataTransfer) && Array.from(e.dataTransfer.types || []).includes('Files');

    // ---- "Continue in Telegram" ----
    function updateTelegram() {
      telegramBar.hidden = !telegramBot;
      telegramButton.disabled = state !== 'online' || telegramBusy;
    }

    function telegramNoteSays(text, failed, link) {
      telegramNote.classList.toggle('sg-tg-failed', Boolean(failed));
      telegramNote.replaceChildren(text);
      if (link) {
        telegramNote.append(' ', h('a', { href: link, target: '_blank', rel: 'noopener noreferrer' },
          'Open Telegram'));
      }
    }

    /** The bot's start link the server gave, only if it is one (never javascript: or another site). */
    function telegramUrl(url) {
      return typeof url === 'string' && /^https:\/\/t\.me\/[A-Za-z0-9_]{5,32}\?start=[A-Za-z0-9_-]{1,64}$/.test(url)
        ? url : null;
    }

    /**
     * Asks for a one-time link to the bot and opens it in a new tab. The link is asked for on
     * each click, not ahead: a token works once and for minutes, so one fetched when the panel
     * opened could be used or stale by the click, and no token is made for a visitor who never
     * wants one. Browsers allow window.open only while the click is being handled, not after
     * the await for the answer, so a blank tab is opened right here and sent to the link once it
     * comes (closed again on a refusal); where even that is blocked, the link is shown to click.
     */
    function continueInTelegram() {
      const s = socket;
      if (!telegramBot || telegramBusy || !s || !s.connected || !subscribed) return;
      let tab = null;
      try {
        tab = window.open('', '_blank');
      } catch (_) {
        tab = null;
      }
      if (tab) {
        // The bot's page gets no handle on the host page.
        try {
          tab.opener = null;
        } catch (_) {
          /* some browsers refuse: harmless */
        }
      }
      telegramBusy = true;
      updateTelegram();
      telegramNoteSays('Opening Telegram…');
      const done = () => {
        telegramBusy = false;
        updateTelegram();
      };
      s.timeout(ACK_TIMEOUT_MS).emitWithAck('telegram link').then((reply) => {
        done();
        const url = telegramUrl(reply && reply.data && reply.data.url);
        if (!url) {
          if (tab) tab.close();
          const error = (reply && reply.error) || {};
          telegramNoteSays(`Telegram is not available: ${error.message || error.code || 'the server gave no link'}`, true);
          return;
        }
        if (tab && !tab.closed) {
          tab.location.href = url;
          telegramNoteSays('Telegram opened in a new tab: press Start there.');
        } else {
          telegramNoteSays('Your browser blocked the new tab:', false, url);
        }
      }, () => {
        done();
        if (tab) tab.close();
        telegramNoteSays('The chat server did not answer; try again.', true);
      });
    }

    // ---- history ----
    function setMoreVisible(visible) {
      moreButton.hidden = !visible;
      moreBar.hidden = !visible;
    }

    function loadOlder() {
      if (historyLoading || !socket || !subscribed || !labels.length) return;
      const s = socket;
      const hadFocus = shadow.activeElement === moreButton;
      historyLoading = true;
      moreButton.disabled = true;
      moreButton.textContent = 'Loading…';
      log.setAttribute('aria-busy', 'true');
      const done = () => {
        historyLoading = false;
        moreButton.disabled = false;
        moreButton.textContent = 'Load older messages';
        log.removeAttribute('aria-busy');
        if (hadFocus) (moreButton.hidden ? log : moreButton).focus();
      };
      s.timeout(ACK_TIMEOUT_MS).emitWithAck('take history', { mid: labels[0] }).then((reply) => {
        if (!reply || !reply.data) setMoreVisible(true); // refused: the button stays usable
        else showAlert('');
        done();
      }, () => {
        setMoreVisible(true);
        done();
      });
    }

    // ---- opening and closing ----
    /** Opens the panel; `focus` moves the keyboard focus into it (not on a restored open). */
    function open(focus) {
      if (destroyed) return;
      isOpen = true;
      panel.hidden = false;
      root.dataset.open = 'true';
      launcher.setAttribute('aria-expanded', 'true');
      session.set(OPEN_KEY, '1');
      if (state === 'idle') start();
      markRead();
      scrollToBottom();
      if (focus) input.focus();
    }

    function close() {
      if (destroyed) return;
      const hadFocus = panel.contains(shadow.activeElement);
      isOpen = false;
      panel.hidden = true;
      root.dataset.open = 'false';
      launcher.setAttribute('aria-expanded', 'false');
      session.set(OPEN_KEY, null);
      if (hadFocus) launcher.focus();
    }

    function start() {
      if (socket) return;
      setState('connecting');
      if (token) restoreVisitorState();
      connect();
    }

    function destroy() {
      destroyed = true;
      clearTimeout(retryTimer);
      if (socket) {
        socket.removeAllListeners();
        socket.disconnect();
        socket = null;
      }
      window.removeEventListener('online', onBrowserOnline);
      window.removeEventListener('offline', onBrowserOffline);
      clearChosen();
      host.remove();
    }

    function onBrowserOnline() {
      if (!socket || socket.connected) return;
      // Back on the network: connect now rather than at the end of the retry back-off.
      setState(everOnline ? 'reconnecting' : 'connecting');
      socket.disconnect();
      socket.connect();
    }

    function onBrowserOffline() {
      if (socket && !socket.connected) setState('offline', 'no network');
    }

    // ---- events ----
    launcher.addEventListener('click', () => (isOpen ? close() : open(true)));
    closeButton.addEventListener('click', close);
    panel.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        close();
      }
    });
    moreButton.addEventListener('click', loadOlder);
    telegramButton.addEventListener('click', continueInTelegram);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      send();
    });
    input.addEventListener('input', () => {
      updateSend();
      tellTyping();
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        send();
      }
    });
    attachButton.addEventListener('click', () => fileInput.click());
    fileInput.addEventListener('change', () => {
      addFiles(fileInput.files);
      fileInput.value = ''; // the same file may be chosen again
    });
    input.addEventListener('paste', (e) => {
      const data = e.clipboardData;
      const pasted = data ? Array.from(data.files || []) : [];
      // Text wins when there is some: office programs put a picture of the copied text beside it.
      if (!pasted.length || data.getData('text/plain')) return;
      e.preventDefault();
      addFiles(pasted);
    });
    // Files dragged over the panel: a drop target over all of it while they are above it.
    panel.addEventListener('dragenter', (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      dragDepth += 1;
      drop.hidden = false;
    });
    panel.addEventListener('dragover', (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    panel.addEventListener('dragleave', (e) => {
      if (!carriesFiles(e)) return;
      dragDepth = Math.max(0, dragDepth - 1);
      if (!dragDepth) drop.hidden = true;
    });
    panel.addEventListener('drop', (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      dragDepth = 0;
      drop.hidden = true;
      addFiles(e.dataTransfer.files);
      input.focus();
    });
    window.addEventListener('online', onBrowserOnline);
    window.addEventListener('offline', onBrowserOffline);

    document.body.append(host);
    updateSend();
    setUnread(0);
    if (!token && !tokenUrl) {
      setState('offline', 'no visitor token was given to the chat widget');
    } else if (options.open || session.get(OPEN_KEY)) {
      open(false);
    } else if (connectOn === 'load') {
      start();
    }

    return {
      open: () => open(true),
      close,
      toggle: () => (isOpen ? close() : open(true)),
      destroy,
      state: () => state,
    };
  }

  function whenReady(fn) {
    if (document.body) fn();
    else document.addEventListener('DOMContentLoaded', fn, { once: true });
  }

  function init(options) {
    if (instance) {
      console.warn('Socketgram: already initialised; call Socketgram.destroy() first');
      return api;
    }
    const opts = Object.assign({}, options || {});
    const early = [];
    instance = { early };
    whenReady(() => {
      if (!instance || instance.early !== early) return; // destroyed in between
      instance = createWidget(opts);
      for (const name of early) instance[name]();
    });
    return api;
  }

  /** An API call; before the page is ready it runs once the widget exists. */
  const call = (name) => () => {
    if (instance && typeof instance[name] === 'function') return instance[name]();
    if (instance && instance.early) instance.early.push(name);
    return undefined;
  };

  const api = Object.freeze({
    version: VERSION,
    init,
    open: call('open'),
    close: call('close'),
    toggle: call('toggle'),
    state: () => (instance && typeof instance.state === 'function' ? instance.state() : 'idle'),
    destroy() {
      if (instance && typeof instance.destroy === 'function') instance.destroy();
      instance = null;
    },
  });

  Object.defineProperty(window, 'Socketgram', { value: api, configurable: true, enumerable: false, writable: false });

  const fromTag = optionsFromScript(ownScript);
  if (fromTag.token || fromTag.tokenUrl) init(fromTag);
}());
