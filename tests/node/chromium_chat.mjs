// The chat page (examples/chat, GET /chat/) in headless Chromium, driven by
// playwright-core with the system's browser: two pages, each through its
// own PoP, exchange messages.
//
//   node chromium_chat.mjs HOST1:PORT HOST2:PORT ROOM
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [hostA, hostB, room] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "verge-chromium-"));
// A fresh profile (--user-data-dir) every run.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  timeout: 60000,
});
let code = 0;
try {
  const tab = async (host) => {
    const page = await browser.newPage();
    await page.goto(`http://${host}/chat/?room=${encodeURIComponent(room)}`);
    await page.waitForFunction(() => document.getElementById("status").textContent === "connected", null, { timeout: 20000 });
    return page;
  };
  const say = async (page, text) => {
    await page.fill("#text", text);
    await page.click("button");
  };
  const seen = (page, text) =>
    page.waitForFunction((t) => [...document.querySelectorAll("#log .msg")].some((d) => d.textContent === t), text, { timeout: 20000 });
  const p1 = await tab(hostA);
  await say(p1, "hello from tab 1");
  await seen(p1, "hello from tab 1");
  const p2 = await tab(hostB);
  await seen(p2, "hello from tab 1"); // the history, through the other PoP
  await say(p2, "hello from tab 2");
  await seen(p1, "hello from tab 2");
  await seen(p2, "hello from tab 2");
  const log = await p1.$$eval("#log .msg", (ds) => ds.map((d) => d.textContent));
  console.log("ok " + JSON.stringify(log));
} catch (e) {
  console.error("FAIL " + e);
  code = 1;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
