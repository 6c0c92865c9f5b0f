/**
 * --web's addresses and who the view answers: loopback names only, or the
 * token, compared in constant time.
 * @module
 */
import assert from "node:assert/strict";
import { checkAccess, isLoopback, newToken, parseWebAddress } from "../../lib/web/web_access.ts";

Deno.test("--web addresses: ADDR:PORT, [V6]:PORT, PORT; anything else is refused", () => {
  assert.deepEqual(parseWebAddress("127.0.0.1:7070"), { hostname: "127.0.0.1", port: 7070 });
  assert.deepEqual(parseWebAddress("[::1]:8080"), { hostname: "::1", port: 8080 });
  assert.deepEqual(parseWebAddress("0.0.0.0:1"), { hostname: "0.0.0.0", port: 1 });
  assert.deepEqual(parseWebAddress("localhost:9"), { hostname: "localhost", port: 9 });
  assert.deepEqual(parseWebAddress("9000"), { hostname: "127.0.0.1", port: 9000 });
  assert.deepEqual(parseWebAddress(":9000"), { hostname: "127.0.0.1", port: 9000 });
  for (const bad of ["", "x", "1.2.3.4", "1.2.3.4:", "1.2.3.4:70000", "::1:80", "a b:1"]) {
    assert.throws(() => parseWebAddress(bad), /Invalid --web/, bad);
  }
});

Deno.test("loopback: 127/8, ::1 and localhost, nothing else", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"]) {
    assert.ok(isLoopback(h), h);
  }
  for (const h of ["0.0.0.0", "::", "10.0.0.1", "localhost.evil.example", "127.0.0.1.nip.io"]) {
    assert.ok(!isLoopback(h), h);
  }
});

Deno.test("access: without a token by Host, with one by bearer, cookie or query", () => {
  const req = (headers: Record<string, string>, path = "/") =>
    [new Request(`http://127.0.0.1:7070${path}`, { headers }), new URL(`http://x${path}`)] as const;
  assert.deepEqual(checkAccess(...req({ host: "127.0.0.1:7070" }), undefined), { ok: true });
  assert.deepEqual(checkAccess(...req({ host: "[::1]:7070" }), undefined), { ok: true });
  const rebound = checkAccess(...req({ host: "attacker.example:7070" }), undefined);
  assert.equal(!rebound.ok && "status" in rebound && rebound.status, 403);
  const token = newToken();
  assert.notEqual(token, newToken());
  const none = checkAccess(...req({ host: "127.0.0.1:7070" }), token);
  assert.equal(!none.ok && "status" in none && none.status, 401);
  assert.deepEqual(checkAccess(...req({ authorization: `Bearer ${token}` }), token), { ok: true });
  assert.deepEqual(checkAccess(...req({ cookie: `a=b; ecap_token=${token}` }), token), {
    ok: true,
  });
  const wrong = checkAccess(...req({ cookie: `ecap_token=${token}x` }), token);
  assert.equal(wrong.ok, false);
  const login = checkAccess(...req({}, `/?token=${token}`), token);
  assert.ok(!login.ok && "redirect" in login && login.cookie.includes("HttpOnly"));
});
