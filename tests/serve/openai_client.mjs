#!/usr/bin/env node
// Client side of the serving test: OpenAI's own Node client (npm `openai`, pinned in
// scripts/npm_fixtures.sh) against `mfqat serve` on loopback. Prints one JSON object of what the
// client saw; tests/serve/openai_client_test.py checks it.
//
//   node tests/serve/openai_client.mjs OPENAI_PACKAGE_DIR BASE_URL MODEL_ID
import path from "node:path";
import { pathToFileURL } from "node:url";

const [dir, baseURL, modelId] = process.argv.slice(2);
const { default: OpenAI } = await import(pathToFileURL(path.join(dir, "index.mjs")).href);
const client = new OpenAI({ baseURL, apiKey: "not-needed", maxRetries: 0, timeout: 120000 });
const out = {};

out.models = (await client.models.list()).data.map((m) => m.id);

const messages = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Name a colour." },
];
const chat = await client.chat.completions.create({ model: modelId, messages, max_tokens: 12, temperature: 0 });
out.chat = { object: chat.object, role: chat.choices[0].message.role, content: chat.choices[0].message.content,
  finish_reason: chat.choices[0].finish_reason, usage: chat.usage, format: chat.format };

const stream = await client.chat.completions.create({ model: modelId, messages, max_tokens: 12, temperature: 0, stream: true,
  stream_options: { include_usage: true } });
out.chat_stream = { chunks: 0, content: "", roles: [], finish_reason: null, usage: null };
for await (const chunk of stream) {
  out.chat_stream.chunks++;
  if (chunk.usage) out.chat_stream.usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.role) out.chat_stream.roles.push(c.delta.role);
    if (c.delta.content) out.chat_stream.content += c.delta.content;
    if (c.finish_reason) out.chat_stream.finish_reason = c.finish_reason;
  }
}

// the format chosen by model name (a format is also a model id)
const comp = await client.completions.create({ model: "mxint4", prompt: "The quick brown fox", max_tokens: 10, seed: 3 });
out.completion = { object: comp.object, text: comp.choices[0].text, finish_reason: comp.choices[0].finish_reason, usage: comp.usage,
  format: comp.format };
const cstream = await client.completions.create({ model: "mxint4", prompt: "The quick brown fox", max_tokens: 10, seed: 3, stream: true });
out.completion_stream = "";
for await (const chunk of cstream) out.completion_stream += chunk.choices.map((c) => c.text).join("");

// the raw ChatML prompt through /v1/completions must give the chat's answer
out.errors = {};
for (const [name, call] of [
  ["unknown_model", () => client.chat.completions.create({ model: "gpt-4o", messages, max_tokens: 4 })],
  ["bad_temperature", () => client.completions.create({ model: modelId, prompt: "x", max_tokens: 4, temperature: -1 })],
]) {
  try {
    await call();
    out.errors[name] = null;
  } catch (e) {
    out.errors[name] = { cls: e.constructor.name, status: e.status, message: e.message, param: e.param ?? null };
  }
}
process.stdout.write(JSON.stringify(out) + "\n");
