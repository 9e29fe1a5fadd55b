// The browser scripts' side of the line dialogue with their Rust test (socketgram_tests::node::
// Dialogue): say where we are on stdout, wait for the test's answer on stdin, fail with a reason.

import { createInterface } from "node:readline";

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Tells the Rust test `line`. */
export function say(line) {
  process.stdout.write(`${line}\n`);
}

/** Waits for the Rust test to say `word`. */
export async function expectLine(word) {
  const { value, done } = await stdin.next();
  if (done || value.trim() !== word) {
    throw new Error(`expected "${word}" on stdin, got ${done ? "end of input" : JSON.stringify(value)}`);
  }
}

/** Fails the script with `what` (and `detail`) unless `condition` holds. */
export function check(condition, what, detail) {
  if (!condition) {
    throw new Error(`${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
  }
}

/** Lets the script end: the open stdin would keep Node.js running. */
export function endDialogue() {
  process.stdin.destroy();
}
