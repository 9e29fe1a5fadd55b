// The operator console in headless Chromium (Debian's), driven by tests/binary/console.rs:
// two staff members in two browsers, and a visitor (the widget, on the console's "Test as a
// visitor" page), following the README's "First five minutes".
//
// Environment: WEB_URL (the web edge), CID (the visitor), SHOTS (a directory for screenshots,
// optional), ATTACH_CID (the visitor who exchanges files with support, in a conversation of
// its own so CID's stays as the Rust test checks it; default CID + 1), RESULTS (optional: a
// path where the script writes, as JSON, the messages with files it sent, for the Rust test to
// compare with what is stored). Lines on stdout tell the Rust test where we are: "first-run"
// (the first-run page showed the commands; the Rust test then runs them and answers "admins"
// on stdin), "done". Any failure: a reason on stderr, exit code 1.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { check, endDialogue, expectLine, say } from "./dialogue.mjs";

const WEB_URL = process.env.WEB_URL;
const CID = process.env.CID;
const SHOTS = process.env.SHOTS;
const ATTACH_CID = process.env.ATTACH_CID ?? String(Number(CID) + 1);
const RESULTS = process.env.RESULTS;
const STEP_MS = 20_000;
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const HELLO = "Hello, my order did not arrive";
const REPLY = "Hi, Alice here. Let me look.";
const AGAIN = "It came today, thank you!";
/** The canned reply the Rust test stores as /thanks. */
const THANKS = "Thank you for writing to Acme!";
const NOTE = "Courier lost the parcel; refund if it is not there by Friday";
const PHOTO_TEXT = "This is what came instead";
/** A 64x48 PNG the visitor sends, and a 48x64 one support answers with. */
const PHOTO = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAEAAAAAwCAIAAAAuKetIAAAAQ0lEQVR42u3PQQkAAAgEsCtjJpubxwp+hcEKLNXzWgQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQErhbkvNji3uAq1gAAAABJRU5ErkJggg==",
  "base64",
);
const LABEL = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAADAAAABACAIAAADTQmMRAAAAQ0lEQVR42u3OQQ0AAAgEoAthWBObwxbOBxsByHS9EiEhISEhISEhISEhISEhISEhISEhISEhISEhISEhISEhISGhKwtpOVkANv8iEwAAAABJRU5ErkJggg==",
  "base64",
);


/** No serious or critical accessibility violation on the page as it is now. */
async function accessible(page, state) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(
    bad.length === 0,
    `axe-core finds no serious violation (${state})`,
    bad.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target) })),
  );
}

const browsers = [];

/** A browser of its own (its own cookies), with a page that records what it notified. */
async function open(name, { locale = "en-US", viewport = { width: 1280, height: 800 } } = {}) {
  const dir = mkdtempSync(join(tmpdir(), `sg-console-${name}-`));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport,
    locale,
    // axe-core is injected as a script of the test's: the console's CSP would refuse it.
    bypassCSP: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  await context.grantPermissions(["notifications"], { origin: WEB_URL });
  await context.addInitScript(() => {
    window.__notified = [];
    const Real = window.Notification;
    if (!Real) return;
    // Notifications are shown by the system, out of the page's reach: record what the page asks for.
    window.Notification = class extends Real {
      constructor(title, options) {
        super(title, options);
        window.__notified.push({ title, body: options?.body ?? "" });
      }
    };
    window.Notification.requestPermission = Real.requestPermission.bind(Real);
    Object.defineProperty(window.Notification, "permission", { get: () => Real.permission });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && console.error(`${name} console: ${m.text()}`));
  browsers.push({ context, dir, problems });
  return page;
}

async function signIn(page, login, password) {
  await page.locator("#login").fill(login);
  await page.locator("#password").fill(password);
  await page.locator("#sign-in-submit").click();
}

function row(page, cid = CID) {
  return page.locator(`#inbox [data-cid="${cid}"]`);
}

/** Waits until the <img> `img` (a locator) has loaded from the server; its alt and size. */
async function loaded(page, img) {
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle({ timeout: STEP_MS }), { timeout: STEP_MS });
  return img.evaluate((el) => ({ alt: el.alt, width: el.getAttribute("width"), height: el.getAttribute("height"), src: el.src }));
}

async function openConversation(page) {
  await row(page).locator("button").first().click();
  await page.locator(`#msg-list .msg[data-label]`).first().waitFor({ timeout: STEP_MS });
}

async function run() {
  // 1. The address the server printed: a first-run page with the commands to type.
  const alice = await open("alice");
  await alice.goto(`${WEB_URL}/`);
  check(new URL(alice.url()).pathname === "/console/", "/ leads to the console", alice.url());
  await alice.locator("#first-run").waitFor({ timeout: STEP_MS });
  const commands = await alice.locator("#first-run").textContent();
  check(commands.includes("socketgram admin add") && commands.includes("socketgram admin passwd"),
    "the first-run page shows how to create the first admin", commands);
  await accessible(alice, "first run");
  say("first-run");
  await expectLine("admins");

  // 2. Reload: the sign-in form. A wrong password and an admin without rights are refused.
  await alice.reload();
  await alice.locator("#login").waitFor({ timeout: STEP_MS });
  await accessible(alice, "sign-in");
  await signIn(alice, "alice", "not the password");
  const error = alice.locator("#sign-in-error");
  await error.filter({ hasText: /wrong login or password/i }).waitFor({ timeout: STEP_MS });
  check((await alice.locator("#password").inputValue()) === "", "the wrong password is cleared");
  await signIn(alice, "guest", "guest password 1");
  await error.filter({ hasText: /no rights/i }).waitFor({ timeout: STEP_MS });
  await signIn(alice, "alice", "alice password 1");
  await alice.locator("#app").waitFor({ state: "visible", timeout: STEP_MS });
  check((await alice.locator("#me").textContent()).includes("Alice"), "signed in as Alice");
  // Notifications are opt-in: Alice turns them on.
  await alice.locator("#settings-button").click();
  await alice.locator("#notify").check();
  await alice.keyboard.press("Escape");

  // 3. Bob, in Russian, at phone width.
  const bob = await open("bob", { locale: "ru-RU", viewport: { width: 390, height: 780 } });
  await bob.goto(`${WEB_URL}/console/`);
  await signIn(bob, "bob", "bob password 12");
  await bob.locator("#app").waitFor({ state: "visible", timeout: STEP_MS });
  check((await bob.locator("html").getAttribute("lang")) === "ru", "Bob's console is in Russian");
  check((await bob.locator("#search").getAttribute("aria-label") ?? (await bob.locator('label[for="search"]').textContent())) !== "Search",
    "Russian labels");

  // 4. A visitor: Alice opens "Test as a visitor" (the widget on a page of its own, beside
  // the console); both staff see the visitor online.
  const [visitor] = await Promise.all([
    alice.context().waitForEvent("page"),
    alice.locator("#app-links a", { hasText: "Test as a visitor" }).click(),
  ]);
  visitor.on("pageerror", (e) => browsers[0].problems.push(`visitor: page error: ${e.message}`));
  await visitor.waitForLoadState();
  check(new URL(visitor.url()).pathname === "/console/try", "the test visitor's page", visitor.url());
  // As visitor CID (the page takes ?cid=, as the demo page does).
  await visitor.goto(`${WEB_URL}/console/try?cid=${CID}`);
  await visitor.locator(".sg-launcher").click();
  const input = visitor.getByLabel("Your message");
  await input.waitFor({ timeout: STEP_MS });
  await visitor.locator(".sg-status-text", { hasText: /^Online$/ }).waitFor({ timeout: STEP_MS });
  await alice.locator("#online-list").getByText(CID).waitFor({ timeout: STEP_MS });
  await bob.locator("#online-list").getByText(CID).waitFor({ timeout: STEP_MS });

  // 5. The visitor writes: the conversation comes to the top of both inboxes, unread, and
  // Alice is notified.
  await input.fill(HELLO);
  await input.press("Enter");
  await row(alice).filter({ hasText: HELLO }).waitFor({ timeout: STEP_MS });
  await row(bob).filter({ hasText: HELLO }).waitFor({ timeout: STEP_MS });
  check((await alice.locator("#inbox [data-cid]").first().getAttribute("data-cid")) === CID, "at the top");
  await row(alice).locator(".badge").waitFor({ timeout: STEP_MS });
  await alice.waitForFunction(() => document.title.startsWith("(1)"), null, { timeout: STEP_MS });
  await alice.waitForFunction(() => window.__notified.length > 0, null, { timeout: STEP_MS });
  const notified = await alice.evaluate(() => window.__notified);
  check(notified.some((n) => `${n.title} ${n.body}`.includes(HELLO)), "the notification shows the message", notified);

  // 6. Alice opens it, types (the visitor sees it), replies; the visitor's "seen" comes back.
  await openConversation(alice);
  await alice.locator(".msg.from-visitor", { hasText: HELLO }).waitFor({ timeout: STEP_MS });
  await alice.waitForFunction(() => !document.title.startsWith("("), null, { timeout: STEP_MS });
  const reply = alice.locator("#reply");
  await reply.pressSequentially("Hi, ", { delay: 20 });
  await visitor.locator(".sg-typing", { hasText: /typing/ }).waitFor({ timeout: STEP_MS });
  await reply.fill(REPLY);
  await reply.press("Enter");
  await visitor.locator(".sg-list .sg-msg.sg-theirs", { hasText: REPLY }).waitFor({ timeout: STEP_MS });
  await alice.locator(".msg.from-support", { hasText: REPLY }).locator("xpath=..").locator(".seen")
    .or(alice.locator(".seen")).first().waitFor({ timeout: STEP_MS });
  // The visitor types: Alice sees it.
  await input.pressSequentially("It ", { delay: 20 });
  await alice.locator("#typing", { hasText: /typing/i }).waitFor({ timeout: STEP_MS });
  await input.fill("");
  // And "Seen" both ways: the visitor's widget shows support read its message.
  await visitor.locator(".sg-list .sg-msg.sg-own", { hasText: HELLO }).locator(".sg-seen").waitFor({ timeout: STEP_MS });

  // A private note: shown to support, never to the visitor.
  await alice.locator("#note-input").fill(NOTE);
  await alice.locator("#note-submit").click();
  await alice.locator("#notes .note", { hasText: NOTE }).waitFor({ timeout: STEP_MS });
  // A canned reply: "/th" lists it, Enter picks it, Enter sends it.
  await reply.fill("/th");
  await alice.locator("#canned [role=option]", { hasText: "/thanks" }).waitFor({ timeout: STEP_MS });
  await reply.press("Enter");
  check((await reply.inputValue()) === THANKS, "the canned reply replaces the box's text", await reply.inputValue());
  await reply.press("Enter");
  await visitor.locator(".sg-list .sg-msg.sg-theirs", { hasText: THANKS }).waitFor({ timeout: STEP_MS });
  check((await visitor.locator(".sg-list", { hasText: "Courier" }).count()) === 0, "the visitor never sees a note");
  // Keyboard: Escape leaves the reply box, "?" lists the shortcuts.
  await reply.focus();
  await alice.keyboard.press("Escape");
  await alice.keyboard.press("?");
  await alice.locator("#shortcuts-dialog").waitFor({ state: "visible", timeout: STEP_MS });
  await alice.keyboard.press("Escape");
  await alice.locator("#shortcuts-dialog").waitFor({ state: "hidden", timeout: STEP_MS });

  // 7. Alice takes it: Bob sees it assigned to her. She resolves it; the visitor's next
  // message reopens it.
  await alice.locator("#take").click();
  await alice.locator("#unassign").waitFor({ state: "visible", timeout: STEP_MS });
  await row(bob).locator(".row-assignee", { hasText: "alice" }).waitFor({ timeout: STEP_MS });
  await alice.locator('#status-buttons [data-status="resolved"]').click();
  await row(alice).filter({ hasText: "Resolved" }).waitFor({ timeout: STEP_MS });
  await input.fill(AGAIN);
  await input.press("Enter");
  await alice.locator(".msg.from-visitor", { hasText: AGAIN }).waitFor({ timeout: STEP_MS });
  await row(alice).filter({ hasText: "Open" }).waitFor({ timeout: STEP_MS });
  await accessible(alice, "conversation");
  if (SHOTS) await alice.screenshot({ path: join(SHOTS, "console-conversation.png") });

  // 8. A reload keeps everything: still signed in, the same conversation open, its history.
  await alice.reload();
  await alice.locator("#app").waitFor({ state: "visible", timeout: STEP_MS });
  check(alice.url().includes(`#/c/${CID}`), "the open conversation is in the address", alice.url());
  for (const text of [HELLO, REPLY, THANKS, AGAIN]) {
    await alice.locator("#msg-list .msg", { hasText: text }).waitFor({ timeout: STEP_MS });
  }
  await alice.locator("#unassign").waitFor({ state: "visible", timeout: STEP_MS });
  await alice.locator("#notes .note", { hasText: NOTE }).waitFor({ timeout: STEP_MS });
  // "e" resolves the open conversation from the keyboard; the visitor's messages reopened it before.
  await alice.locator("body").press("e");
  await row(alice).filter({ hasText: "Resolved" }).waitFor({ timeout: STEP_MS });

  // 9. Bob at phone width: one pane at a time, with a way back.
  await row(bob).locator("button").first().click();
  await bob.locator("#back").waitFor({ state: "visible", timeout: STEP_MS });
  check(!(await bob.locator("#inbox").isVisible()), "at phone width the inbox gives way to the conversation");
  await bob.locator("#back").click();
  await bob.locator("#inbox").waitFor({ state: "visible", timeout: STEP_MS });
  await accessible(bob, "inbox, Russian, phone width");
  if (SHOTS) {
    await alice.locator("#back").isVisible();
    await alice.goto(`${WEB_URL}/console/#/`);
    await row(alice).waitFor({ timeout: STEP_MS });
    await alice.screenshot({ path: join(SHOTS, "console-inbox.png") });
  }

  // 10. Files, with visitor ATTACH_CID: the visitor's photo shows in the console as its
  // thumbnail; Alice answers with a picture alone, chosen with the paperclip; the visitor's
  // widget shows it.
  await visitor.goto(`${WEB_URL}/console/try?cid=${ATTACH_CID}`);
  await visitor.locator(".sg-launcher").waitFor({ timeout: STEP_MS });
  // The panel opens again by itself when it was open before (the tab remembers).
  if (!(await visitor.locator(".sg-panel").isVisible())) await visitor.locator(".sg-launcher").click();
  await visitor.locator(".sg-status-text", { hasText: /^Online$/ }).waitFor({ timeout: STEP_MS });
  await visitor.locator('#socketgram-widget input[type="file"]').setInputFiles({ name: "parcel.png", mimeType: "image/png", buffer: PHOTO });
  await visitor.locator('.sg-chip[data-state="done"]', { hasText: "parcel.png" }).waitFor({ timeout: STEP_MS });
  await input.fill(PHOTO_TEXT);
  await input.press("Enter");
  await visitor.locator(".sg-list .sg-msg.sg-own", { hasText: PHOTO_TEXT }).waitFor({ timeout: STEP_MS });

  await row(alice, ATTACH_CID).filter({ hasText: PHOTO_TEXT }).waitFor({ timeout: STEP_MS });
  await row(alice, ATTACH_CID).locator("button").first().click();
  const photo = alice.locator(".msg.from-visitor", { hasText: PHOTO_TEXT });
  await photo.waitFor({ timeout: STEP_MS });
  const seen = await loaded(alice, photo.locator(".msg-thumb img"));
  check(seen.alt === "parcel.png" && seen.width === "64" && seen.height === "48" && seen.src.startsWith(`${WEB_URL}/files/`),
    "the visitor's photo shows in the console as its thumbnail", seen);
  const link = await photo.locator("a.msg-thumb").evaluate((a) => ({ href: a.href, target: a.target, rel: a.rel }));
  check(link.href.startsWith(`${WEB_URL}/files/`) && link.target === "_blank" && link.rel === "noopener", "the thumbnail links to the photo, in a new tab", link);

  const [chooser] = await Promise.all([alice.waitForEvent("filechooser", { timeout: STEP_MS }), alice.locator("#attach").click()]);
  await chooser.setFiles({ name: "label.png", mimeType: "image/png", buffer: LABEL });
  await alice.locator('#reply-files .file-chip[data-state="done"]', { hasText: "label.png" }).waitFor({ timeout: STEP_MS });
  check((await reply.inputValue()) === "" && (await alice.locator("#send").isEnabled()), "Send is enabled with an uploaded file and no text");
  await accessible(alice, "conversation with files, one ready to send");
  await alice.locator("#send").click();
  const answer = alice.locator(".msg.from-support[data-label]", { has: alice.locator('img[alt="label.png"]') });
  await answer.waitFor({ timeout: STEP_MS });
  check((await answer.locator(".msg-text").count()) === 0, "a reply of a file alone shows no empty bubble");
  await loaded(alice, answer.locator(".msg-thumb img"));
  check((await alice.locator("#reply-files .file-chip").count()) === 0, "the sent file left the tray");
  await alice.locator("#pending-list .msg").waitFor({ state: "detached", timeout: STEP_MS });
  await row(alice, ATTACH_CID).filter({ hasText: "📎 label.png" }).waitFor({ timeout: STEP_MS });
  const got = await loaded(visitor, visitor.locator(".sg-list .sg-msg.sg-theirs .sg-thumb img"));
  check(got.alt === "label.png" && got.width === "48" && got.height === "64", "the visitor's widget shows support's picture", got);
  if (SHOTS) await alice.screenshot({ path: join(SHOTS, "console-files.png") });
  if (RESULTS) {
    writeFileSync(RESULTS, JSON.stringify({
      cid: Number(ATTACH_CID),
      messages: [
        { from: "visitor", text: PHOTO_TEXT, attachments: [{ name: "parcel.png", type: "image/png", size: PHOTO.length, width: 64, height: 48, thumbnail: true }] },
        { from: "alice", text: "", attachments: [{ name: "label.png", type: "image/png", size: LABEL.length, width: 48, height: 64, thumbnail: true }] },
      ],
    }, null, 2));
  }

  // 11. Sign out everywhere: Alice's page goes back to the sign-in form.
  await alice.locator("#settings-button").click();
  await alice.locator("#sign-out-everywhere").click();
  await alice.locator("#login").waitFor({ state: "visible", timeout: STEP_MS });

  const problems = browsers.flatMap((b) => b.problems);
  check(problems.length === 0, "no page errors", problems);
  say("done");
}

try {
  await run();
} catch (e) {
  console.error(`console_e2e: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  for (const b of browsers) {
    await b.context.close().catch(() => {});
    rmSync(b.dir, { recursive: true, force: true });
  }
  endDialogue();
}
