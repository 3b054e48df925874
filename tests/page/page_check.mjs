// Drives Debian's chromium (headless, through playwright-core) against a service page and
// checks what a person would see. Usage:
//   node tests/page/page_check.mjs URL SCENARIO SCREENSHOT.png
// Prints one line per check and ends with "N passed, N failed"; exit status 1 on failure.
// Scenarios are the functions in `scenarios` below.
import { chromium } from 'playwright-core';

const [url, scenario, shot] = process.argv.slice(2);
if (!url || !scenario) {
  console.error('usage: node page_check.mjs URL SCENARIO [SCREENSHOT.png]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

let passed = 0, failed = 0;
function check(name, ok, detail = '') {
  if (ok) { passed++; console.log(`ok   ${name}`); }
  else { failed++; console.log(`FAIL ${name}${detail ? ': ' + detail : ''}`); }
}

// Status line texts the pages show once /readyz has answered.
async function readinessShown(page) {
  await page.waitForFunction(() => {
    const t = document.querySelector('#status-text');
    return t && !/checking/i.test(t.textContent);
  }, null, { timeout: 10000 });
  return (await page.textContent('#status-text')).trim();
}

const scenarios = {
  // A page with no model loaded says so, and a request shows the service's 503 answer.
  async 'nanorec-not-ready'(page) {
    check('title names nanorec', /nanorec/i.test(await page.title()), await page.title());
    const status = await readinessShown(page);
    check('status says not ready', /not ready/i.test(status), status);
    const missing = await page.textContent('#missing');
    check('missing artifacts are listed', missing.trim().length > 0, missing);
    await page.click('#send');
    await page.waitForSelector('#http:not([hidden])', { timeout: 10000 });
    const http = await page.textContent('#http');
    check('request answered 503', /503/.test(http), http);
  },
  async 'trendstory-not-ready'(page) {
    check('title names trendstory', /trendstory/i.test(await page.title()), await page.title());
    const status = await readinessShown(page);
    check('status shown', status.length > 0, status);
    const options = await page.$$eval('#theme option', (os) => os.map((o) => o.value));
    for (const t of ['comedy', 'tragedy', 'sarcasm', 'mystery', 'romance', 'sci-fi'])
      check(`theme ${t} offered`, options.includes(t), options.join(','));
    const sources = await page.$$eval('#source option', (os) => os.map((o) => o.value));
    for (const s of ['google', 'hackernews', 'wikipedia', 'rss'])
      check(`source ${s} offered`, sources.includes(s), sources.join(','));
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario '${scenario}'; known: ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
const browser = await chromium.launch({ executablePath, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 50[23]/.test(m.text())) errors.push(m.text()); });
  const resp = await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  check('page answers 200', resp && resp.status() === 200, resp ? String(resp.status()) : 'no response');
  await run(page);
  check('no script errors', errors.length === 0, errors.join(' | '));
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  check('scenario ran to the end', false, String(e).split('\n')[0]);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
