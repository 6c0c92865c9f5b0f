/**
 * Who may read the live web view. Captured plaintext is secret: on loopback
 * the page answers only to loopback host names (a web site that rebinds its
 * own name to 127.0.0.1 gets 403); on any other address every request needs
 * the token, from loopback too.
 * @module
 */
import { EcapError } from "../base/errors.ts";

/** Default address of --web. */
export const DEFAULT_WEB_ADDRESS = "127.0.0.1:7070";

/** Where the view listens. */
export interface WebAddress {
  hostname: string;
  port: number;
}

const COOKIE = "ecap_token";

/** "ADDR:PORT", "[V6]:PORT" or "PORT" (on 127.0.0.1). */
export function parseWebAddress(text: string): WebAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([\w.-]*)):(\d{1,5})$/.exec(text) ??
    /^()()(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new EcapError(`Invalid --web "${text}": expected ADDR:PORT, [ADDR]:PORT or PORT`, {
      kind: "usage",
      hint: `e.g. --web ${DEFAULT_WEB_ADDRESS}`,
    });
  }
  return { hostname: m[1] || m[2] || "127.0.0.1", port };
}

/** True if an address or host name can only be reached from this machine. */
export function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}

/** A token for a view bound beyond loopback when none was given: 128 random bits. */
export function newToken(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Compares in time that depends on the length alone, not on where the
 * bytes differ. Not node:crypto's timingSafeEqual: importing node:crypto
 * cost every capture's start 35 ms, --web or not.
 */
function sameToken(given: string, token: string): boolean {
  const a = new TextEncoder().encode(given), b = new TextEncoder().encode(token);
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** What to do with a request: serve it, set the cookie and go to the page, or refuse. */
export type Access =
  | { ok: true }
  | { ok: false; redirect: string; cookie: string }
  | { ok: false; status: 401 | 403; message: string };

/** Decides on a request, given the token (undefined: none is needed). */
export function checkAccess(req: Request, url: URL, token: string | undefined): Access {
  if (token === undefined) {
    const host = req.headers.get("host") ?? "";
    const name = host.replace(/:\d+$/, "");
    if (!isLoopback(name)) {
      return { ok: false, status: 403, message: `ecap: not served to host "${host}"` };
    }
    return { ok: true };
  }
  const bearer = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
  const cookie = (req.headers.get("cookie") ?? "").split(/;\s*/)
    .find((c) => c.startsWith(`${COOKIE}=`))?.slice(COOKIE.length + 1);
  if ([bearer, cookie].some((t) => t !== undefined && sameToken(t, token))) return { ok: true };
  const query = url.searchParams.get("token");
  if (query !== null && sameToken(query, token)) {
    // the token leaves the address bar (and the history) for a cookie only this page sends
    return {
      ok: false,
      redirect: url.pathname,
      cookie: `${COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict`,
    };
  }
  return {
    ok: false,
    status: 401,
    message: "ecap: this live view needs the token ecap printed when it started",
  };
}
