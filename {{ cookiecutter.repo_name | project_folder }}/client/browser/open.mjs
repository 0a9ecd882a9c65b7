// Open each page given on the command line in headless Chromium and print,
// as JSON, what each shows and what the browser logged:
//   node client/browser/open.mjs URL...
// Chromium is CHROMIUM_PATH (default /usr/bin/chromium): Debian's or
// Ubuntu's chromium package, your own Chrome, or the one that
// `npx playwright-core install chromium` downloads (it prints its path).
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const TIMEOUT_MS = Number(process.env.PAGE_TIMEOUT_MS || 240_000);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // No GPU, and none of Chromium's own calls home (updates, sync, field
  // trials): the test talks to this machine only.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const shown = {};
try {
  for (const url of process.argv.slice(2)) {
    // A new context: its own empty profile, nothing cached between pages.
    const context = await browser.newContext();
    const page = await context.newPage();
    const logged = [];
    page.on("console", (message) => logged.push(message.text()));
    await page.goto(url);
    await page.waitForSelector("body[data-done]", { timeout: TIMEOUT_MS });
    shown[url] = {
      calculate: await page.textContent("#calculate"),
      compare: await page.textContent("#compare"),
      console: logged,
    };
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(shown));
