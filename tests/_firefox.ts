/**
 * Debian's firefox-esr, headless, for the nss module's tests: a profile
 * that trusts the test's CA (in its own NSS database, with certutil) and
 * reaches 127.0.0.1 only: every other host goes to a proxy nobody runs,
 * and the background services (updates, telemetry, safe browsing, DNS over
 * HTTPS) are off.
 * @module
 */
import { sh } from "./_helpers.ts";

export const FIREFOX = "/usr/lib/firefox-esr/firefox-esr";

const PREFS: Record<string, string | number | boolean> = {
  "network.proxy.type": 1,
  "network.proxy.http": "127.0.0.1",
  "network.proxy.http_port": 9,
  "network.proxy.ssl": "127.0.0.1",
  "network.proxy.ssl_port": 9,
  "network.proxy.no_proxies_on": "127.0.0.1",
  "network.trr.mode": 5,
  "network.dns.disablePrefetch": true,
  "network.prefetch-next": false,
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  "app.update.enabled": false,
  "app.normandy.enabled": false,
  "browser.safebrowsing.malware.enabled": false,
  "browser.safebrowsing.phishing.enabled": false,
  "browser.safebrowsing.downloads.enabled": false,
  "browser.shell.checkDefaultBrowser": false,
  "datareporting.policy.dataSubmissionEnabled": false,
  "datareporting.healthreport.uploadEnabled": false,
  "toolkit.telemetry.enabled": false,
  "extensions.update.enabled": false,
  "extensions.getAddons.cache.enabled": false,
  "browser.newtabpage.enabled": false,
  "media.gmp-manager.updateEnabled": false,
  "security.OCSP.enabled": 0,
};

/**
 * A profile in dir trusting caPem; http2: false keeps Firefox to HTTP/1.1,
 * tls12: true to TLS 1.2.
 */
export async function firefoxProfile(
  dir: string,
  caPem: string,
  { http2 = true, tls12 = false } = {},
): Promise<string> {
  const profile = `${dir}/firefox-profile`;
  await Deno.mkdir(profile, { recursive: true });
  const db = `sql:${profile}`;
  for (
    const args of [
      ["-N", "--empty-password", "-d", db],
      ["-A", "-n", "ecap test CA", "-t", "C,,", "-i", caPem, "-d", db],
    ]
  ) {
    const r = await sh("certutil", args);
    if (r.code !== 0) throw new Error(`certutil ${args.join(" ")}: ${r.stderr}`);
  }
  const prefs = {
    ...PREFS,
    "network.http.http2.enabled": http2,
    "security.tls.version.max": tls12 ? 3 : 4,
  };
  await Deno.writeTextFile(
    `${profile}/user.js`,
    Object.entries(prefs).map(([k, v]) => `user_pref("${k}", ${JSON.stringify(v)});\n`).join(""),
  );
  return profile;
}

/** Firefox loads url once (--screenshot) and exits; throws if it failed, else returns its stderr. */
export async function firefoxLoad(url: string, profile: string): Promise<string> {
  const out = await new Deno.Command(FIREFOX, {
    args: [
      "--headless",
      "--no-remote",
      "--profile",
      profile,
      "--screenshot",
      `${profile}/shot.png`,
      url,
    ],
    env: { MOZ_CRASHREPORTER_DISABLE: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`firefox exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stderr);
}
