// The chat widget in headless Chromium (Debian's), driven by tests/binary/widget.rs.
//
// Environment: WEB_URL (the web edge), CID (the visitor), SEEDED (how many messages the Rust
// test stored before), SCREENSHOT (a .png path; a "-mobile" copy is taken too).
// Lines on stdout tell the Rust test where we are: "ready" (the widget is online), "sent"
// (our message is shown with its id), "offline" (the browser lost its network), "done". The
// Rust test answers on stdin: "replied" once it has stored the admin's reply ("shown" /
// "support-read": the widget told support the reply is seen, then support read the visitor's
// message; "support-typing" / "support-stopped" after the script said "typing" and
// "typing-shown"), "replied-away"
// once it has stored one while we were offline. Any failure: a reason on stderr, exit code 1.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { check, endDialogue, expectLine, say } from "./dialogue.mjs";

const WEB_URL = process.env.WEB_URL;
const CID = process.env.CID;
const SEEDED = Number(process.env.SEEDED ?? 0);
const SCREENSHOT = process.env.SCREENSHOT;
/** Longest wait for any one step. */
const STEP_MS = 20_000;

const HELLO = "Hello from the widget";
const REPLY = "Hi, Alice here. How can I help?";
const AWAY = "While you were away: we are here.";
const XSS = `<img src=x onerror="window.__sgXss=1"> & "quotes"`;
const QUEUED = "Typed before the page reloaded";


/** Messages in the widget's list, in DOM order. */
async function shown(page) {
  return page.locator(".sg-list .sg-msg").evaluateAll((els) =>
    els.map((el) => ({
      label: Number(el.dataset.label),
      own: el.classList.contains("sg-own"),
      who: el.querySelector(".sg-who").textContent,
      date: el.querySelector("time")?.getAttribute("datetime") ?? null,
      text: el.querySelector(".sg-text").textContent,
    })),
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

  check(problems.length === 0, "no page errors", problems);
  say("done");
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
