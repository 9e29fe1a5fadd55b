// The chat widget in headless Chromium (Debian's), driven by tests/binary/widget.rs.
//
// Environment: WEB_URL (the web edge), CID (the visitor), SEEDED (how many messages the Rust
// test stored before), SCREENSHOT (a .png path; a "-mobile" copy is taken too), ATTACH_CID
// (the visitor who sends files, in a conversation of its own so CID's stays as the Rust test
// checks it; default CID + 1), RESULTS (optional: a path where the script writes, as JSON, what
// it sent with files, for the Rust test to compare with what is stored; see `attachments`),
// TELEGRAM_BOT (the bot the server names, if any) and TELEGRAM_LINK (a path where the script
// writes the start link "Continue in Telegram" opened, for the Rust test to redeem).
// Lines on stdout tell the Rust test where we are: "ready" (the widget is online), "sent"
// (our message is shown with its id), "offline" (the browser lost its network), "done". The
// Rust test answers on stdin: "replied" once it has stored the admin's reply ("shown" /
// "support-read": the widget told support the reply is seen, then support read the visitor's
// message; "support-typing" / "support-stopped" after the script said "typing" and
// "typing-shown"), "replied-away"
// once it has stored one while we were offline. Any failure: a reason on stderr, exit code 1.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { check, endDialogue, expectLine, say } from "./dialogue.mjs";

const WEB_URL = process.env.WEB_URL;
const CID = process.env.CID;
const SEEDED = Number(process.env.SEEDED ?? 0);
const SCREENSHOT = process.env.SCREENSHOT;
const ATTACH_CID = process.env.ATTACH_CID ?? String(Number(CID) + 1);
const RESULTS = process.env.RESULTS;
const TELEGRAM_BOT = process.env.TELEGRAM_BOT;
const TELEGRAM_LINK = process.env.TELEGRAM_LINK;
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
/** Longest wait for any one step. */
const STEP_MS = 20_000;

const HELLO = "Hello from the widget";
const REPLY = "Hi, Alice here. How can I help?";
const AWAY = "While you were away: we are here.";
const XSS = `<img src=x onerror="window.__sgXss=1"> & "quotes"`;
const QUEUED = "Typed before the page reloaded";

// Files: real ones the server must take (a 64x48 PNG, which gets a thumbnail, and a text file),
// and an SVG document named like a PNG, which it must refuse whatever the name says.
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAEAAAAAwCAIAAAAuKetIAAAAQ0lEQVR42u3PQQkAAAgEsCtjJpubxwp+hcEKLNXzWgQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQErhbkvNji3uAq1gAAAABJRU5ErkJggg==",
  "base64",
);
const NOTES = "Order 1234: the parcel number is 5678.\n";
const FAKE_PNG = '<svg xmlns="http://www.w3.org/2000/svg"><script>window.__sgXss=2</script></svg>';
const WITH_FILES = "Here are the photo and my notes";
const LATER = "Sent after a reload, alone.\n";


/** Messages in the widget's list, in DOM order. */
async function shown(page) {
  return page.locator(".sg-list .sg-msg").evaluateAll((els) =>
    els.map((el) => ({
      label: Number(el.dataset.label),
      own: el.classList.contains("sg-own"),
      who: el.querySelector(".sg-who").textContent,
      date: el.querySelector("time")?.getAttribute("datetime") ?? null,
      // A message of files alone has no text bubble.
      text: el.querySelector(".sg-text")?.textContent ?? "",
    })),
  );
}

/** No serious or critical accessibility violation in the widget as it is now. */
async function accessible(page, state) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () => window.axe.run("#socketgram-widget", { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(
    bad.length === 0,
    `axe-core finds no serious violation in the widget (${state})`,
    bad.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target) })),
  );
}

async function waitOnline(page) {
  await page.locator(".sg-status-text", { hasText: /^Online$/ }).waitFor({ timeout: STEP_MS });
}

/** The widget's shadow root's focused element, as "tag.class" or "tag#id". */
function focused(page) {
  return page.evaluate(() => {
    const el = document.querySelector("#socketgram-widget")?.shadowRoot?.activeElement;
    return el ? `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : `.${el.className}`}` : null;
  });
}

async function waitCount(page, n) {
  await page.waitForFunction(
    (n) => document.querySelector("#socketgram-widget")?.shadowRoot?.querySelectorAll(".sg-list .sg-msg").length === n,
    n,
    { timeout: STEP_MS },
  );
}

function checkOrdered(list, what) {
  const labels = list.map((m) => m.label);
  check(labels.every((l, i) => Number.isSafeInteger(l) && (i === 0 || l > labels[i - 1])), `${what}: labels in increasing order, no duplicates`, labels);
}

/** Waits until the <img> `img` (a locator) has loaded from the server. */
async function loaded(page, img) {
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle({ timeout: STEP_MS }), { timeout: STEP_MS });
}

async function waitNoPending(page) {
  await page.waitForFunction(
    () => document.querySelector("#socketgram-widget").shadowRoot.querySelectorAll(".sg-pending .sg-msg").length === 0,
    null,
    { timeout: STEP_MS },
  );
}

/**
 * Files, as visitor ATTACH_CID on a page of its own: a file the server refuses by its content
 * says why and sends nothing; a PNG and a text file chosen at once upload and go with a text;
 * the thumbnail loads from the server, the chip's link serves the text; a message of one
 * uploaded file alone, queued in sessionStorage before a reload (as the widget keeps what it
 * could not send), goes out after it with that file. Returns what was sent, for RESULTS.
 */
async function attachments(context) {
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(`${WEB_URL}/demo?cid=${ATTACH_CID}`);
  await page.locator(".sg-launcher").click();
  await waitOnline(page);
  const input = page.getByLabel("Your message");
  const send = page.getByRole("button", { name: "Send" });
  const fileInput = page.locator('#socketgram-widget input[type="file"]');

  // The paperclip opens the picker. A file named .png that is an SVG document: the server
  // refuses it by its content; the chip says why, there is nothing to send, it can be removed.
  const [chooser] = await Promise.all([
    page.waitForEvent("filechooser", { timeout: STEP_MS }),
    page.getByRole("button", { name: "Attach files" }).click(),
  ]);
  check(chooser.isMultiple(), "the picker takes several files");
  await chooser.setFiles({ name: "x.png", mimeType: "image/png", buffer: Buffer.from(FAKE_PNG) });
  const refused = page.locator('.sg-chip[data-state="failed"]', { hasText: "x.png" });
  await refused.waitFor({ timeout: STEP_MS });
  const why = await refused.locator(".sg-chip-error").textContent();
  check(why === "x.png: this type of file is not accepted", "the server's refusal is shown on the file", why);
  check(await send.isDisabled(), "Send is disabled with a refused file alone");
  await refused.getByRole("button", { name: "Remove x.png" }).click();
  await refused.waitFor({ state: "detached", timeout: STEP_MS });
  check((await focused(page)) === "textarea#sg-input", "focus back in the message box after removing the file", await focused(page));

  // Two files at once: both upload (their progress bars gone when done), then go with a text.
  await fileInput.setInputFiles([
    { name: "photo.png", mimeType: "image/png", buffer: PNG },
    { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from(NOTES) },
  ]);
  for (const name of ["photo.png", "notes.txt"]) {
    await page.locator('.sg-chip[data-state="done"]', { hasText: name }).waitFor({ timeout: STEP_MS });
  }
  check(await page.locator(".sg-chip progress").evaluateAll((bars) => bars.every((bar) => bar.hidden)),
    "no progress bar once the files have uploaded");
  check(await send.isEnabled(), "Send is enabled once the files have uploaded, with no text yet");
  await accessible(page, "two files ready to send");
  await input.fill(WITH_FILES);
  await input.press("Enter");
  const sent = page.locator(".sg-list .sg-msg.sg-own", { hasText: WITH_FILES });
  await sent.waitFor({ timeout: STEP_MS });
  await waitNoPending(page);
  check((await page.locator(".sg-chip").count()) === 0, "the sent files left the tray");

  // The image as its thumbnail, loaded from the server, sized from the message; linked to the
  // file in a new tab. The text file as a chip with its name and size, to download.
  const img = sent.locator(".sg-thumb img");
  await loaded(page, img);
  const thumb = await img.evaluate((el) => ({ alt: el.alt, width: el.getAttribute("width"), height: el.getAttribute("height"), src: el.src }));
  check(thumb.alt === "photo.png" && thumb.width === "64" && thumb.height === "48", "the thumbnail is named and sized as the image", thumb);
  check(thumb.src.startsWith(`${WEB_URL}/files/`), "the thumbnail comes from the chat server", thumb.src);
  const link = await sent.locator("a.sg-thumb").evaluate((a) => ({ href: a.href, target: a.target, rel: a.rel }));
  check(link.target === "_blank" && link.rel === "noopener" && link.href.startsWith(`${WEB_URL}/files/`), "the thumbnail links to the file, in a new tab", link);
  const chip = await sent.locator("a.sg-file", { hasText: "notes.txt" }).evaluate((a) => ({
    href: a.href, download: a.getAttribute("download"), text: a.textContent, rel: a.rel,
  }));
  check(chip.download === "notes.txt" && chip.text.includes(`${NOTES.length} B`) && chip.rel === "noopener",
    "the text file shows as a chip with its size, to download", chip);
  // The links serve the files themselves (signed addresses: no cookie goes with them).
  const fetched = await page.evaluate(async ([image, text]) => {
    const [a, b] = await Promise.all([fetch(image, { credentials: "omit" }), fetch(text, { credentials: "omit" })]);
    return { image: [a.status, (await a.arrayBuffer()).byteLength], text: [b.status, await b.text()] };
  }, [link.href, chip.href]);
  check(fetched.image[0] === 200 && fetched.image[1] === PNG.length, "the image's link serves the image", fetched.image);
  check(fetched.text[0] === 200 && fetched.text[1] === NOTES, "the chip's link serves the text file", fetched.text);

  // An uploaded file queued with an empty text before a reload goes out after it, with its id.
  await fileInput.setInputFiles({ name: "later.txt", mimeType: "text/plain", buffer: Buffer.from(LATER) });
  const ready = page.locator('.sg-chip[data-state="done"]', { hasText: "later.txt" });
  await ready.waitFor({ timeout: STEP_MS });
  const raw = await ready.getAttribute("data-file-id");
  const fileId = /^\d+$/.test(raw) ? Number(raw) : raw;
  await page.evaluate(([cid, file]) => {
    sessionStorage.setItem(`socketgram:queue:${location.origin}:${cid}`,
      JSON.stringify([{ id: "queued-with-a-file", text: "", attachments: [file] }]));
  }, [ATTACH_CID, { id: fileId, name: "later.txt", type: "text/plain", size: LATER.length, width: 0, height: 0 }]);
  await page.reload();
  await waitOnline(page);
  const alone = page.locator(".sg-list .sg-msg.sg-own", { has: page.locator("a.sg-file", { hasText: "later.txt" }) });
  await alone.waitFor({ timeout: STEP_MS });
  await waitNoPending(page);
  check((await alone.locator(".sg-text").count()) === 0, "a message of a file alone shows no empty bubble");
  // The history brings the files back after the reload.
  await loaded(page, page.locator(".sg-list .sg-msg", { hasText: WITH_FILES }).locator(".sg-thumb img"));
  const list = await shown(page);
  check(JSON.stringify(list.map((m) => [m.own, m.text])) === JSON.stringify([[true, WITH_FILES], [true, ""]]),
    "the conversation holds the two messages with files, once each; the refused file sent nothing", list);
  check(await page.evaluate(() => typeof window.__sgXss === "undefined"), "nothing ran from the refused file");
  await accessible(page, "messages with files");
  check(problems.length === 0, "no page errors with files", problems);
  await page.close();
  return {
    cid: Number(ATTACH_CID),
    refused: [{ name: "x.png", shown: why }],
    messages: [
      {
        text: WITH_FILES,
        attachments: [
          { name: "photo.png", type: "image/png", size: PNG.length, width: 64, height: 48, thumbnail: true },
          { name: "notes.txt", type: "text/plain", size: NOTES.length, width: 0, height: 0, thumbnail: false },
        ],
      },
      {
        text: "",
        client_msg_id: "queued-with-a-file",
        attachments: [{ id: fileId, name: "later.txt", type: "text/plain", size: LATER.length, width: 0, height: 0, thumbnail: false }],
      },
    ],
  };
}

async function run(context) {
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && console.error(`browser console: ${m.text()}`));

  await page.goto(`${WEB_URL}/demo?cid=${CID}`);
  const launcher = page.locator(".sg-launcher");
  await launcher.waitFor({ timeout: STEP_MS });

  // Accessible markup.
  check((await page.locator('[role="log"][aria-live="polite"]').count()) === 1, "one role=log with aria-live=polite");
  check((await page.locator('.sg-status[aria-live="polite"]').count()) === 1, "a polite status line");
  check((await launcher.getAttribute("aria-expanded")) === "false", "launcher starts collapsed");

  // Opened with the keyboard, focus goes to the message box.
  await launcher.focus();
  await page.keyboard.press("Enter");
  await page.getByLabel("Your message").waitFor({ timeout: STEP_MS });
  check((await focused(page)) === "textarea#sg-input", "focus in the message box after opening", await focused(page));
  check((await launcher.getAttribute("aria-expanded")) === "true", "launcher says expanded");
  await waitOnline(page);
  await continueInTelegram(context, page);

  // History on open: the last 20 of what the Rust test stored, oldest first, and a button.
  if (SEEDED > 0) {
    await waitCount(page, Math.min(SEEDED, 20));
    const first = await shown(page);
    checkOrdered(first, "history on open");
    check(first.every((m) => m.own && m.who === "You"), "seeded visitor messages are shown as our own", first[0]);
    check(first.at(-1).text === `seed ${SEEDED}`, "the newest seeded message last", first.at(-1));
    if (SEEDED > 20) {
      await page.getByRole("button", { name: "Load older messages" }).waitFor({ timeout: STEP_MS });
    }
  }
  say("ready");

  // Send through the UI: Enter sends, the message shows with its id, the box empties.
  const input = page.getByLabel("Your message");
  await input.fill(HELLO);
  check((await page.locator(".sg-counter").textContent()).startsWith(`${HELLO.length} /`), "the counter counts");
  await input.press("Enter");
  await page.locator(".sg-list .sg-msg.sg-own .sg-text", { hasText: HELLO }).waitFor({ timeout: STEP_MS });
  check((await input.inputValue()) === "", "the message box is emptied after sending");
  await page.waitForFunction(
    () => document.querySelector("#socketgram-widget").shadowRoot.querySelectorAll(".sg-pending .sg-msg").length === 0,
    null,
    { timeout: STEP_MS },
  );
  say("sent");

  // The admin's reply, sent by the Rust test over gRPC, shows with the admin's name.
  await expectLine("replied");
  const reply = page.locator(".sg-list .sg-msg.sg-theirs", { hasText: REPLY });
  await reply.waitFor({ timeout: STEP_MS });
  check((await reply.locator(".sg-who").textContent()) === "Alice Acme", "the reply is signed with the admin's display name");
  check(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(await reply.locator("time").getAttribute("datetime")), "the reply has its date");
  // Open, the widget has told support the reply is seen; once support has read the visitor's
  // message, "Seen" shows under it.
  say("shown");
  await expectLine("support-read");
  const seen = page.locator(".sg-list .sg-msg.sg-own", { hasText: HELLO }).locator(".sg-seen");
  await seen.waitFor({ timeout: STEP_MS });
  check((await seen.textContent()) === "Seen", "\"Seen\" under the message support has read");

  // Typing both ways: the visitor's draft is told to support (its length); support typing
  // shows "<name> is typing" until support says it stopped.
  await input.pressSequentially("is it", { delay: 20 });
  say("typing");
  await expectLine("support-typing");
  const typingLine = page.locator(".sg-typing");
  await typingLine.waitFor({ state: "visible", timeout: STEP_MS });
  check((await typingLine.textContent()) === "Alice Acme is typing…", "support typing is shown with the admin's name", await typingLine.textContent());
  check((await typingLine.getAttribute("aria-live")) === "polite", "the typing line is announced politely");
  say("typing-shown");
  await expectLine("support-stopped");
  await typingLine.waitFor({ state: "hidden", timeout: STEP_MS });
  await input.fill("");

  // The network goes: the widget says so and will not send; a reply stored meanwhile shows
  // once when it is back (it resumes after the newest message it has).
  await context.setOffline(true);
  await page.locator(".sg-status-text", { hasText: /^(Offline|Reconnecting)/ }).waitFor({ timeout: STEP_MS });
  await input.fill("a draft");
  check(await page.getByRole("button", { name: "Send" }).isDisabled(), "Send is disabled while disconnected");
  say("offline");
  await expectLine("replied-away");
  await context.setOffline(false);
  await waitOnline(page);
  await page.locator(".sg-list .sg-msg.sg-theirs", { hasText: AWAY }).waitFor({ timeout: STEP_MS });
  check((await input.inputValue()) === "a draft", "the draft survives the disconnection");
  await input.fill("");
  const resumed = await shown(page);
  checkOrdered(resumed, "after resuming");
  check(JSON.stringify(resumed.slice(-3).map((m) => m.text)) === JSON.stringify([HELLO, REPLY, AWAY]), "resumed without loss or duplicates", resumed.slice(-3));

  // Markup in a message is text, never HTML.
  await input.fill(XSS);
  await page.getByRole("button", { name: "Send" }).click();
  const xss = page.locator(".sg-list .sg-msg.sg-own .sg-text", { hasText: "onerror" });
  await xss.waitFor({ timeout: STEP_MS });
  check((await xss.textContent()) === XSS, "markup shows exactly as typed", await xss.textContent());
  const imgs = await page.evaluate(() => document.querySelector("#socketgram-widget").shadowRoot.querySelectorAll(".sg-log img").length);
  check(imgs === 0, "no element was made from message text", imgs);

  // A message the server refuses (the test server allows 200 characters) says why, and can
  // be discarded.
  await input.fill("y".repeat(300));
  await input.press("Enter");
  const failed = page.locator(".sg-pending .sg-msg.sg-failed");
  await failed.waitFor({ timeout: STEP_MS });
  const why = await failed.locator(".sg-note").textContent();
  check(why.startsWith("Not sent:") && why.includes("the limit is 200"), "the server's refusal is shown on the message", why);
  await failed.getByRole("button", { name: "Discard" }).click();
  await failed.waitFor({ state: "detached", timeout: STEP_MS });
  check((await focused(page)) === "textarea#sg-input", "focus back in the message box after discarding", await focused(page));

  // An over-long message cannot be sent, and the counter says why.
  await input.fill("x".repeat(10_001));
  check(await page.getByRole("button", { name: "Send" }).isDisabled(), "Send is disabled over the limit");
  check((await page.locator(".sg-counter").textContent()).includes("too long"), "the counter says it is too long");
  await input.fill("");

  const before = await shown(page);
  checkOrdered(before, "before reload");

  // A send the page could not finish before a reload (kept in sessionStorage) goes out after
  // it; the same send retried with its client_msg_id is stored once. The panel stays open.
  const queueOf = (id) => page.evaluate(([cid, id, text]) => {
    sessionStorage.setItem(`socketgram:queue:${location.origin}:${cid}`, JSON.stringify([{ id, text }]));
  }, [CID, id, QUEUED]);
  const total = SEEDED + 5;
  for (const round of ["sent after the reload", "retried after another reload"]) {
    await queueOf("queued-before-reload");
    await page.reload();
    await waitOnline(page);
    await page.locator(".sg-list .sg-msg.sg-own .sg-text", { hasText: QUEUED }).waitFor({ timeout: STEP_MS });
    await page.waitForFunction(
      () => document.querySelector("#socketgram-widget").shadowRoot.querySelectorAll(".sg-pending .sg-msg").length === 0,
      null,
      { timeout: STEP_MS },
    );
    // Shown after everything before it (one socket, in order), so the list is complete now:
    // the last 20, plus the queued message when it was stored after the history was read.
    const now = await shown(page);
    check(now.length === 20 || now.length === 21, `history, queued message ${round}: the last page`, now.length);
    checkOrdered(now, `history, queued message ${round}`);
    const tail = now.slice(-5).map((m) => [m.own, m.who, m.text]);
    const expectedTail = [[true, "You", HELLO], [false, "Alice Acme", REPLY], [false, "Alice Acme", AWAY], [true, "You", XSS], [true, "You", QUEUED]];
    check(JSON.stringify(tail) === JSON.stringify(expectedTail), `history after reload, queued message ${round}: in order, once`, tail);
  }
  let after;

  // Older pages until there are no more: every message exactly once, in order.
  while (total > (await shown(page)).length) {
    const count = (await shown(page)).length;
    await page.getByRole("button", { name: "Load older messages" }).click({ timeout: STEP_MS });
    await waitCount(page, Math.min(total, count + 10));
  }
  after = await shown(page);
  checkOrdered(after, "after loading older messages");
  const texts = after.map((m) => m.text);
  const expected = [...Array.from({ length: SEEDED }, (_, i) => `seed ${i + 1}`), HELLO, REPLY, AWAY, XSS, QUEUED];
  check(JSON.stringify(texts) === JSON.stringify(expected), "the whole conversation, in order, once", texts);
  await page.locator(".sg-more-bar").waitFor({ state: "hidden", timeout: STEP_MS });

  // The page's globals: only Socketgram was added by the widget (io comes with the client).
  check(await page.evaluate(() => typeof window.__sgXss === "undefined"), "no script ran from a message");
  check(await page.evaluate(() => typeof window.Socketgram?.open === "function"), "window.Socketgram exposes open()");

  if (SCREENSHOT) {
    await page.screenshot({ path: SCREENSHOT });
  }

  // Narrow screens: the panel takes the whole width.
  await page.setViewportSize({ width: 375, height: 700 });
  const box = await page.locator(".sg-panel").boundingBox();
  check(box && Math.round(box.width) === 375, "the panel is full width on a phone", box);
  if (SCREENSHOT) {
    await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-mobile.png") });
  }
  await page.setViewportSize({ width: 1100, height: 760 });

  // Escape closes the panel and gives focus back to the launcher.
  await input.focus();
  await page.keyboard.press("Escape");
  await page.locator(".sg-panel").waitFor({ state: "hidden", timeout: STEP_MS });
  check((await focused(page)) === "button.sg-launcher", "focus back on the launcher after closing", await focused(page));

  const withFiles = await attachments(context);
  if (RESULTS) writeFileSync(RESULTS, JSON.stringify(withFiles, null, 2));

  check(problems.length === 0, "no page errors", problems);
  say("done");
}

/**
 * "Continue in Telegram": shown only when the server names a bot; a click opens the bot's
 * one-time start link in a new tab (Telegram itself is not reached: the tab's request is
 * answered here), and the link goes to TELEGRAM_LINK for the Rust test to redeem.
 */
async function continueInTelegram(context, page) {
  const bar = page.locator(".sg-tg");
  if (!TELEGRAM_BOT) {
    check(await bar.isHidden(), "no \"Continue in Telegram\" without a bot");
    return;
  }
  await bar.waitFor({ timeout: STEP_MS });
  const button = page.getByRole("button", { name: /Continue in Telegram/ });
  check(await button.isEnabled(), "\"Continue in Telegram\" can be pressed when online");
  await context.route("https://t.me/**", (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: "<title>Telegram</title>" }));
  const [tab] = await Promise.all([context.waitForEvent("page", { timeout: STEP_MS }), button.click()]);
  const pattern = new RegExp(`^https://t\\.me/${TELEGRAM_BOT}\\?start=[A-Za-z0-9_-]{22}$`);
  await tab.waitForURL(pattern, { timeout: STEP_MS });
  const link = tab.url();
  check(await tab.evaluate(() => window.opener === null), "the bot's tab has no handle on the page");
  await page.locator(".sg-tg-note", { hasText: "press Start" }).waitFor({ timeout: STEP_MS });
  await tab.close();
  if (TELEGRAM_LINK) writeFileSync(TELEGRAM_LINK, link);
}

const userDataDir = mkdtempSync(join(tmpdir(), "sg-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1100, height: 760 },
    // What the widget reports as the visitor's page context (the Rust test checks it).
    locale: "de-AT",
    timezoneId: "Europe/Vienna",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  await run(context);
  await context.close();
  process.exitCode = 0;
} catch (e) {
  console.error(`widget_e2e: ${e.stack || e}`);
  process.exitCode = 1;
  await context?.close().catch(() => {});
} finally {
  rmSync(userDataDir, { recursive: true, force: true });
  endDialogue();
}
