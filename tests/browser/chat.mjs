// Loads the web chat page in headless Chromium (Debian's /usr/bin/chromium
// through playwright-core), sends a message and waits for a streamed reply.
// Usage: node chat.mjs BASE_URL API_KEY SCREENSHOT.png
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, key, shot] = process.argv.slice(2);
const userDataDir = mkdtempSync(join(tmpdir(), "llama-wgpu-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1100, height: 700 },
});
const fail = async (msg) => { console.error(msg); await context.close(); process.exit(1); };
const timer = setTimeout(() => fail("timed out"), 150_000);
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => console.error("page error:", e.message));
  // Nothing but the server may be reached: the page must need no CDN.
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(base)) return route.continue();
    console.error("blocked external request:", url);
    return route.abort();
  });
  await page.goto(base + "/");
  // An earlier exchange kept in the browser, with a code block: shown again
  // after a reload, and sent with the next message.
  await page.evaluate(() => localStorage.setItem("llama-wgpu.history", JSON.stringify([
    { role: "user", content: "Print hi in Python." },
    { role: "assistant", content: "Use `print`:\n```python\nprint(\"hi\")\n```" },
  ])));
  await page.reload();
  const code = await page.textContent(".msg.assistant pre code");
  if (code !== 'print("hi")') await fail("code block not shown as code: " + code);
  await page.fill("#api-key", key);
  await page.dispatchEvent("#api-key", "change");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("ready"));
  const model = await page.textContent("#model");
  // Code blocks are shown as code, and model text is never HTML.
  const html = await page.evaluate(() => render("a `b` <i>\n```py\nprint(1)\n```"));
  if (html !== 'a <code>b</code> &lt;i&gt;\n<pre><code data-lang="py">print(1)</code></pre>') await fail("render: " + html);
  await page.fill("#system", "You are a concise assistant.");
  await page.dispatchEvent("#system", "change");
  await page.fill("#temperature", "0");
  await page.dispatchEvent("#temperature", "change");
  await page.fill("#max-tokens", "12");
  await page.dispatchEvent("#max-tokens", "change");
  await page.fill("#input", "Write hello world in Python.");
  await page.click("#send");
  // Streamed: text appears while the reply is still streaming, the stop
  // button live (read in one go in the page: no race with the end).
  const seen = await (await page.waitForFunction(() => {
    const m = document.querySelector(".msg.assistant.streaming");
    return m && m.textContent.length > 0 && { text: m.textContent, stop: !document.getElementById("stop").disabled };
  }, null, { timeout: 120_000, polling: 50 })).jsonValue();
  const partial = seen.text;
  if (!seen.stop) await fail("stop button disabled while streaming");
  // ...then it finishes.
  await page.waitForSelector(".msg.assistant.done", { timeout: 120_000 });
  const reply = await page.textContent(".msg.assistant.done");
  if (!reply.startsWith(partial) || reply.length < partial.length) await fail(`reply ${reply} does not extend ${partial}`);
  if (await page.$(".msg.error")) await fail("error shown: " + reply);
  const speed = await page.textContent("#speed");
  if (!/tokens\/s/.test(speed)) await fail("no tokens/s shown: " + speed);
  const user = await page.textContent(".msg.user:nth-last-child(2)");
  await page.screenshot({ path: shot });
  console.log("model:", model);
  console.log("user:", user);
  console.log("partial:", JSON.stringify(partial));
  console.log("streamed reply:", JSON.stringify(reply));
  console.log("speed:", speed);
} catch (e) {
  await fail(String(e && e.stack || e));
}
clearTimeout(timer);
await context.close();
