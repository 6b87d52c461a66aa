// Drives the official `replicate` npm client, unchanged, against a Cog
// image served by `ember serve` (e2e/cog_test.go starts the server and
// deploys examples/cog as EMBER_COG_MODEL with protocol: cog).
import { test } from "node:test";
import assert from "node:assert/strict";
import Replicate from "replicate";

const url = process.env.EMBER_URL;
const key = process.env.EMBER_KEY;
const model = process.env.EMBER_COG_MODEL;
assert.ok(url && key && model, "set EMBER_URL, EMBER_KEY and EMBER_COG_MODEL");

const replicate = new Replicate({ auth: key, baseUrl: `${url}/v1` });

test("run returns the Cog model's list output", async () => {
  const out = await replicate.run(model, { input: { prompt: "hey", repeat: 2 } });
  assert.deepEqual(out, ["hey#1 ", "hey#2 "]);
});

test("predictions.create, wait, get", async () => {
  let p = await replicate.predictions.create({ model, input: { prompt: "w", style: "shout" } });
  p = await replicate.wait(p, { interval: 50 });
  assert.equal(p.status, "succeeded");
  assert.deepEqual(p.output, ["W#1 "]);
  const again = await replicate.predictions.get(p.id);
  assert.deepEqual(again.output, ["W#1 "]);
});

// The client's wait() throws on a failed prediction, with its error.
test("a failed prediction carries Cog's error", async () => {
  const p = await replicate.predictions.create({ model, input: { prompt: "bad", fail: true } });
  await assert.rejects(replicate.wait(p, { interval: 50 }), /ValueError: the model refused the prompt "bad"/);
  const got = await replicate.predictions.get(p.id);
  assert.equal(got.status, "failed");
});

// The first prediction above loaded the model's schema: an input that
// does not fit is refused at create (422), before any job exists.
test("an invalid input is refused naming the field", async () => {
  await assert.rejects(
    replicate.predictions.create({ model, input: { prompt: "x", repeat: "many" } }),
    (err) => err.response?.status === 422 && /input\.repeat: must be an integer/.test(err.message),
  );
});
