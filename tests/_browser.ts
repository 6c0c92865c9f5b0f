/**
 * Debian's chromium, headless, driven by puppeteer-core (which never
 * downloads a browser), for tests of the live web view. It resolves no
 * names and makes no background requests: the tests reach 127.0.0.1 only.
 * @module
 */
// a dev dependency of the web tests alone: deno.json's imports stay empty for the product
// deno-lint-ignore no-import-prefix
import puppeteer, { type Browser, type Page } from "npm:puppeteer-core@24.43.1";

export type { Page };

const CHROMIUM = "/usr/bin/chromium";

/** A headless chromium; dispose to close it. */
export class HeadlessChromium implements AsyncDisposable {
  #browser: Browser;
  /** Errors the pages logged (a CSP violation is one) and exceptions they threw. */
  readonly errors: string[] = [];

  private constructor(browser: Browser) {
    this.#browser = browser;
  }

  /** extraArgs: more command-line switches (e.g. --ignore-certificate-errors). */
  static async launch(extraArgs: string[] = []): Promise<HeadlessChromium> {
    try {
      Deno.statSync(CHROMIUM);
    } catch {
      throw new Error(`${CHROMIUM} is missing: scripts/bootstrap.sh --test installs it`);
    }
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox", // root
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-gpu",
        ...extraArgs,
      ],
    });
    return new HeadlessChromium(browser);
  }

  /** Opens url in a new page of this size. */
  async open(url: string, width = 1400, height = 900): Promise<Page> {
    const page = await this.#browser.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") this.errors.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => this.errors.push(`page: ${(e as Error).message ?? e}`));
    await page.setViewport({ width, height });
    await page.goto(url, { waitUntil: "load" });
    return page;
  }

  async [Symbol.asyncDispose]() {
    await this.#browser.close();
  }
}
