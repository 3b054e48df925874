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
  // With artifacts loaded: user 1's history and recommendations with titles, genres, years and
  // explanations; "watched it" records an event and the list is recomputed without that movie.
  async 'nanorec-recommend'(page) {
    const status = await readinessShown(page);
    check('status says ready', /^ready$/i.test(status), status);
    await page.fill('#user_id', '1');
    await page.fill('#k', '8');
    await page.click('#send');
    await page.waitForSelector('#recs li', { timeout: 15000 });
    const http = await page.textContent('#http');
    check('request answered 200', /200/.test(http), http);
    const recs = await page.$$eval('#recs li', (ls) => ls.map((l) => ({
      id: l.dataset.movieId, title: l.querySelector('.title')?.textContent || '',
      tags: l.querySelector('.tags')?.textContent || '', why: l.querySelector('.why')?.textContent || '' })));
    check('8 recommendations shown', recs.length === 8, String(recs.length));
    check('each has a title', recs.every((r) => r.title.replace(/^\d+\./, '').trim().length > 0));
    check('each has a year or genres', recs.every((r) => r.tags.trim().length > 0),
          recs.map((r) => r.tags).join(' / '));
    check('each is explained by a watched movie', recs.every((r) => /because you watched/.test(r.why)),
          recs.map((r) => r.why).join(' / '));
    const hist = await page.$$eval('#history-list li', (ls) => ls.map((l) => ({
      title: l.querySelector('.title')?.textContent || '', tags: l.querySelector('.tags')?.textContent || '' })));
    check('recent history shown', hist.length > 0 && hist.every((h) => h.title.length > 0), String(hist.length));
    check('history shows years or genres', hist.every((h) => h.tags.length > 0));
    const histTitles = new Set(hist.map((h) => h.title));
    check('no watched movie is recommended', recs.every((r) => !histTitles.has(r.title.replace(/^\d+\./, ''))));
    const meta = await page.textContent('#meta');
    check('mode and timings shown', /mode model/.test(meta) && /total [\d.]+ ms/.test(meta), meta);
    // watch the top recommendation: it moves into the history and out of the list
    const first = recs[0].id;
    await page.click('#recs li:first-child button.watch');
    await page.waitForFunction((id) => {
      const ls = [...document.querySelectorAll('#recs li')];
      return ls.length > 0 && !ls.some((l) => l.dataset.movieId === id);
    }, first, { timeout: 15000 });
    const top = await page.textContent('#history-list li:first-child .title');
    check('watched movie heads the history', top === recs[0].title.replace(/^\d+\./, ''), top);
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
  // Errors first (a source that fails with nothing cached, a bad field), shown to the user;
  // then a story streams in with its topics (the final screenshot shows it).
  async 'trendstory-story'(page) {
    const status = await readinessShown(page);
    check('status says ready', /^ready/i.test(status), status);

    await page.selectOption('#source', 'rss');
    await page.fill('#url', 'http://127.0.0.1:9/feed.xml'); // nothing listens there
    await page.fill('#limit', '3');
    await page.click('#send');
    await page.waitForSelector('#error:not([hidden])', { timeout: 30000 });
    const err = await page.textContent('#error');
    check('error names the status', /502/.test(err), err);
    check('error says the source failed', /failed/i.test(err) && /rss/.test(err), err);
    check('no story on error', await page.isHidden('#story'));
    if (shot) await page.screenshot({ path: shot.replace(/\.png$/, '') + '-error.png', fullPage: true });

    await page.selectOption('#source', 'hackernews');
    await page.evaluate(() => { document.querySelector('#limit').removeAttribute('max'); });
    await page.fill('#limit', '50'); // out of range: the service refuses it, naming the field
    await page.click('#send');
    await page.waitForFunction(() => /400/.test(document.querySelector('#error').textContent), null, { timeout: 15000 });
    const err2 = await page.textContent('#error');
    check('400 names the field', /limit/.test(err2), err2);

    await page.fill('#limit', '3');
    await page.selectOption('#theme', 'comedy');
    await page.fill('#max_tokens', '120');
    await page.check('#stream');
    await page.click('#send');
    // text appears while the stream is still open (streaming, not one final write)
    await page.waitForFunction(() => {
      const s = document.querySelector('#story');
      return s && !s.hidden && s.textContent.length > 0 && s.classList.contains('streaming');
    }, null, { timeout: 30000 });
    check('text appears while streaming', true);
    check('error cleared', await page.isHidden('#error'));
    await page.waitForSelector('#meta:not([hidden])', { timeout: 60000 });
    const topics = await page.$$eval('#topics li', (ls) => ls.map((l) => l.textContent));
    check('three topics listed', topics.length === 3, topics.join(' | '));
    check('topics come from the source', /drop of seawater/.test(topics[0] || ''), topics[0]);
    const story = (await page.textContent('#story')).trim();
    check('a story was written', story.length > 40, story.slice(0, 80));
    const meta = await page.textContent('#meta');
    check('metadata shown', /tokens\/s/.test(meta) && /first token/.test(meta), meta);
    const http = await page.textContent('#http');
    check('answered 200', /HTTP 200/.test(http), http);
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
  page.on('console', (m) => { if (m.type() === 'error' && !/status of (400|50[234])/.test(m.text())) errors.push(m.text()); });
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
