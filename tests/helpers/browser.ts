/**
 * A real headless browser for the dashboard tests: Debian's Chromium driven by puppeteer-core,
 * with a fresh profile each time, its network requests recorded, and everything removed on
 * close.
 */
import puppeteer, { type Browser, type Page } from "puppeteer-core";

export const CHROMIUM = "/usr/bin/chromium";

export class TestBrowser implements AsyncDisposable {
  readonly requests: string[] = [];
  readonly errors: string[] = [];

  private constructor(readonly browser: Browser, readonly profile: string) {}

  /** `executablePath`: Chromium, or a wrapper that runs it (the benchmarks' dies with them). */
  static async launch(executablePath = CHROMIUM): Promise<TestBrowser> {
    const profile = await Deno.makeTempDir({ prefix: "gsw-chromium-" });
    const browser = await puppeteer.launch({
      executablePath,
      headless: true,
      userDataDir: profile,
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
    return new TestBrowser(browser, profile);
  }

  /** A page at `url`, once the dashboard has its first history. */
  async open(url: string): Promise<Page> {
    const page = await this.browser.newPage();
    await page.setViewport({ width: 1400, height: 900 });
    page.on("request", (r) => this.requests.push(r.url()));
    page.on("pageerror", (e) => this.errors.push(String(e)));
    await page.goto(url, { waitUntil: "load" });
    await page.waitForFunction(() => "gswDashboard" in globalThis, { timeout: 15_000 });
    // deno-lint-ignore no-explicit-any
    await page.evaluate(() => (globalThis as any).gswDashboard.ready);
    return page;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.browser.close().catch(() => {});
    await Deno.remove(this.profile, { recursive: true }).catch(() => {});
  }
}

/** The samples a dashboard page holds for a measurement. */
export function plotData(page: Page, key: string): Promise<{ t: number[]; v: number[] }> {
  // deno-lint-ignore no-explicit-any
  return page.evaluate((k) => (globalThis as any).gswDashboard.plotData(k), key);
}

/** The text a dashboard page shows for a measurement's value. */
export function shownValue(page: Page, key: string): Promise<string | undefined> {
  // deno-lint-ignore no-explicit-any
  return page.evaluate((k) => (globalThis as any).gswDashboard.value(k), key);
}
