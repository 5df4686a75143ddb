// Drives Debian's headless Chromium for berth's dashboard tests: one JSON command per line on
// stdin, one JSON answer per line on stdout ({"ok": true, ...} or {"ok": false, "error": ...}).
// The Rust tests (tests/common/browser.rs) start it, so every step stays in the test itself.
import { createInterface } from "node:readline";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axePath = require.resolve("axe-core/axe.min.js");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
let page = await context.newPage();

const commands = {
  async goto({ url }) {
    const response = await page.goto(url, { waitUntil: "load" });
    return { status: response ? response.status() : 0 };
  },
  // waits until the first element matching `selector` contains `text`; answers how long it took
  async waitText({ selector, text, timeoutMs = 10000 }) {
    const started = Date.now();
    await page.waitForFunction(
      ([s, t]) => { const e = document.querySelector(s); return !!e && e.textContent.includes(t); },
      [selector, text],
      { timeout: timeoutMs, polling: 20 },
    );
    return { ms: Date.now() - started };
  },
  async waitFor({ selector, timeoutMs = 10000 }) {
    const started = Date.now();
    await page.waitForSelector(selector, { timeout: timeoutMs });
    return { ms: Date.now() - started };
  },
  async text({ selector }) {
    return { text: await page.locator(selector).first().textContent() };
  },
  async attrs({ selector, attr }) {
    return { values: await page.$$eval(selector, (els, a) => els.map((e) => e.getAttribute(a)), attr) };
  },
  async count({ selector }) {
    return { count: await page.locator(selector).count() };
  },
  async click({ selector }) {
    await Promise.all([page.waitForLoadState("load"), page.locator(selector).first().click()]);
    return { url: page.url() };
  },
  async fill({ selector, value }) {
    await page.locator(selector).first().fill(value);
    return {};
  },
  async press({ key }) {
    await page.keyboard.press(key);
    return { focused: await page.evaluate(() => document.activeElement && document.activeElement.outerHTML.slice(0, 200)) };
  },
  async eval({ js }) {
    return { value: await page.evaluate(js) };
  },
  async url() {
    return { url: page.url() };
  },
  async viewport({ width, height }) {
    await page.setViewportSize({ width, height });
    return {};
  },
  async colorScheme({ scheme }) {
    await page.emulateMedia({ colorScheme: scheme });
    return {};
  },
  async screenshot({ path, fullPage = false }) {
    await page.screenshot({ path, fullPage });
    return {};
  },
  // axe-core's checks on the page as it is; answers the violations with their impact
  async axe() {
    await page.addScriptTag({ path: axePath });
    const violations = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ["violations"] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }));
    });
    return { violations };
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    const command = JSON.parse(line);
    if (command.op === "close") break;
    const run = commands[command.op];
    if (!run) throw new Error(`unknown op ${command.op}`);
    answer = { ok: true, ...(await run(command)) };
  } catch (e) {
    answer = { ok: false, error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
