import assert from "node:assert/strict";
import { closestName, editDistance } from "../../lib/cli/closest_name.ts";

Deno.test("editDistance() counts a swap of neighbours as one edit", () => {
  assert.equal(editDistance("json", "jsno"), 1);
  assert.equal(editDistance("hex", "hexx"), 1);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("kitten", "sitting"), 3);
});

Deno.test("closestName() suggests within two edits, one for short names", () => {
  const opts = ["--hex", "--har", "--help", "--json", "--duration", "--verbose"];
  assert.equal(closestName("--hexx", opts), "--hex");
  assert.equal(closestName("--jsno", opts), "--json");
  assert.equal(closestName("--verbos", opts), "--verbose");
  assert.equal(closestName("--durashun", opts), undefined);
  assert.equal(closestName("--zzzz", opts), undefined);
});

Deno.test("closestName() suggests the one name a prefix begins", () => {
  assert.equal(closestName("--dur", ["--duration", "--debug"]), "--duration");
  assert.equal(closestName("--d", ["--duration", "--debug"]), undefined);
  assert.equal(closestName("pos", ["postgres", "postgresql"]), undefined);
});
