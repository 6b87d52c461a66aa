// Drives the official `replicate` and `openai` npm clients, unchanged, against
// a real `ember serve`. e2e/clients_test.go starts the server, deploys the
// functions below and runs this file with node; any failed test makes node
// exit non-zero.
//
// Environment:
//   EMBER_URL         the server, e.g. http://127.0.0.1:8080
//   EMBER_KEY         an admin key
//   EMBER_INVOKE_KEY  an invoke key that covers only e2e/sim
//
// Functions (examples/sim):
//   e2e/sim     predict, chat and embeddings
//   e2e/stream  predict_path /stream: five SSE events
//   e2e/plain   like e2e/sim, but labels its JSON answers text/plain
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import Replicate, { validateWebhook } from "replicate";
import OpenAI from "openai";

const url = process.env.EMBER_URL;
const key = process.env.EMBER_KEY;
const invokeKey = process.env.EMBER_INVOKE_KEY;
assert.ok(url && key && invokeKey, "set EMBER_URL, EMBER_KEY and EMBER_INVOKE_KEY");

const replicate = new Replicate({ auth: key, baseUrl: `${url}/v1` });
const openai = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0, timeout: 60_000 });
const openaiInvoke = new OpenAI({ apiKey: invokeKey, baseURL: `${url}/v1`, maxRetries: 0, timeout: 60_000 });

describe("replicate", () => {
  test("run waits for the output", async () => {
    const out = await replicate.run("e2e/sim", { input: { echo: "hello" } });
    assert.equal(out.output, "hello");
  });

  test("predictions.create, then wait", async () => {
    let p = await replicate.predictions.create({ model: "e2e/sim", input: { echo: 42, sleep_ms: 300 } });
    assert.ok(["starting", "processing"].includes(p.status), `fresh prediction is ${p.status}`);
    p = await replicate.wait(p, { interval: 50 });
    assert.equal(p.status, "succeeded");
    assert.equal(p.output.output, 42);
    const again = await replicate.predictions.get(p.id);
    assert.equal(again.status, "succeeded");
  });

  test("stream reads the prediction's events from urls.stream", async () => {
    const events = [];
    for await (const ev of replicate.stream("e2e/stream", { input: {} })) {
      events.push(ev);
    }
    const outputs = events.filter((e) => e.event === "output").map((e) => JSON.parse(e.data).i);
    assert.deepEqual(outputs, [0, 1, 2, 3, 4]);
    assert.equal(events.at(-1).event, "done");
  });

  test("webhooks validate with validateWebhook", async () => {
    const received = [];
    let notify;
    const arrived = new Promise((resolve) => { notify = resolve; });
    const receiver = http.createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c) => { body += c; });
      req.on("end", () => {
        received.push({ headers: req.headers, body });
        res.writeHead(204).end();
        notify();
      });
    });
    await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    after(() => receiver.close());
    const hook = `http://127.0.0.1:${receiver.address().port}/hook`;

    const { key: secret } = await replicate.webhooks.default.secret.get();
    assert.match(secret, /^whsec_/);
    const p = await replicate.predictions.create({
      model: "e2e/sim", input: { echo: "hooked" }, webhook: hook, webhook_events_filter: ["completed"],
    });
    await arrived;
    const { headers, body } = received[0];
    assert.equal(await validateWebhook({ headers, body }, secret), true, "Ember's signature validates");
    const sent = JSON.parse(body);
    assert.equal(sent.id, p.id);
    assert.equal(sent.status, "succeeded");
    assert.equal(sent.output.output, "hooked");
    const tampered = body.replace("hooked", "hacked");
    assert.equal(await validateWebhook({ headers, body: tampered }, secret), false, "a changed body does not validate");
  });
});

describe("openai", () => {
  const messages = [{ role: "user", content: "hello there" }];

  test("chat completion", async () => {
    const c = await openai.chat.completions.create({ model: "e2e/sim", messages });
    assert.equal(c.object, "chat.completion");
    assert.equal(c.choices[0].message.content, "You said: hello there");
  });

  test("streaming chat completion", async () => {
    const stream = await openai.chat.completions.create({ model: "e2e/sim", messages, stream: true });
    const parts = [];
    for await (const chunk of stream) {
      parts.push(chunk.choices[0]?.delta?.content ?? "");
    }
    assert.ok(parts.length > 3, `the answer came in ${parts.length} chunks`);
    assert.equal(parts.join(""), "You said: hello there");
  });

  test("embeddings (base64, the client's default, and float)", async () => {
    const b64 = await openai.embeddings.create({ model: "e2e/sim", input: ["one two", "three"] });
    assert.deepEqual(b64.data.map((d) => Array.from(d.embedding)), [[7, 2, 0, 0.25], [5, 1, 1, 0.25]]);
    const flt = await openai.embeddings.create({ model: "e2e/sim", input: "four", encoding_format: "float" });
    assert.deepEqual(flt.data[0].embedding, [4, 1, 0, 0.25]);
  });

  test("models.list shows what the key covers", async () => {
    const all = [];
    for await (const m of openai.models.list()) all.push(m.id);
    assert.deepEqual(all.sort(), ["e2e/plain", "e2e/sim", "e2e/stream"]);
    const mine = [];
    for await (const m of openaiInvoke.models.list()) mine.push(m.id);
    assert.deepEqual(mine, ["e2e/sim"]);
  });

  test("models.retrieve", async () => {
    const m = await openaiInvoke.models.retrieve("e2e/sim");
    assert.equal(m.id, "e2e/sim");
    assert.equal(m.object, "model");
    assert.equal(typeof m.owned_by, "string");
    for (const [client, id] of [[openai, "nope"], [openaiInvoke, "e2e/plain"]]) {
      await assert.rejects(client.models.retrieve(id), (err) => {
        assert.ok(err instanceof OpenAI.NotFoundError, `retrieve ${id}: ${err}`);
        assert.equal(err.status, 404);
        assert.equal(err.code, "model_not_found");
        return true;
      });
    }
  });

  test("JSON labelled text/plain by the model server still parses", async () => {
    const c = await openai.chat.completions.create({ model: "e2e/plain", messages });
    assert.equal(typeof c, "object", `the client got a ${typeof c}: ${String(c).slice(0, 80)}`);
    assert.equal(c.choices[0].message.content, "You said: hello there");
    const e = await openai.embeddings.create({ model: "e2e/plain", input: "a b", encoding_format: "float" });
    assert.deepEqual(e.data[0].embedding, [3, 2, 0, 0.25]);
    const stream = await openai.chat.completions.create({ model: "e2e/plain", messages, stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(text, "You said: hello there");
  });

  test("errors surface as APIError with the status", async () => {
    await assert.rejects(openai.chat.completions.create({ model: "nope", messages }), (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, String(err));
      assert.equal(err.status, 404);
      assert.equal(err.code, "model_not_found");
      return true;
    });
    const stranger = new OpenAI({ apiKey: "ember_0000000000000000_bm90IGEga2V5", baseURL: `${url}/v1`, maxRetries: 0 });
    await assert.rejects(stranger.chat.completions.create({ model: "e2e/sim", messages }), (err) => {
      assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
      assert.equal(err.status, 401);
      return true;
    });
  });
});
