// Drives a running `specforge serve` with the official openai npm client: a chat completion, a streamed one
// that must spell the same greedy text, and a bad request whose error the client must report as OpenAI's.
// Usage: node serve_test.mjs BASE_URL MODEL. Prints one JSON line of what it saw; exits non-zero on a failed
// check. Run by cmd/specforge's TestServe.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60000 });
const messages = [{ role: "user", content: "Tell me a story about a cat." }];
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };

const chat = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0 });
const text = chat.choices[0].message.content;
check(chat.object === "chat.completion", `object ${chat.object}`);
check(chat.choices[0].message.role === "assistant", "role");
check(["stop", "length"].includes(chat.choices[0].finish_reason), `finish_reason ${chat.choices[0].finish_reason}`);
check(text.length > 0, "empty chat completion");
check(chat.usage.completion_tokens > 0 && chat.usage.completion_tokens <= 24, `completion tokens ${chat.usage.completion_tokens}`);
check(chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens, "total tokens");

const stream = await client.chat.completions.create({
  model, messages, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let streamed = "", chunks = 0, finish = null, streamUsage = null;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) streamUsage = chunk.usage;
  for (const c of chunk.choices) {
    streamed += c.delta.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
}
check(streamed === text, `streamed text ${JSON.stringify(streamed)} differs from ${JSON.stringify(text)}`);
check(chunks > 2, `only ${chunks} chunks`);
check(finish === chat.choices[0].finish_reason, `streamed finish_reason ${finish}`);
check(streamUsage && streamUsage.completion_tokens === chat.usage.completion_tokens, "streamed usage");

let badStatus = 0, badMessage = "", badType = "";
try {
  await client.chat.completions.create({ model, messages, temperature: 7 });
  failures.push("temperature 7 was accepted");
} catch (e) {
  if (!(e instanceof OpenAI.APIError)) throw e;
  badStatus = e.status;
  badMessage = e.error?.message ?? "";
  badType = e.error?.type ?? "";
}
check(badStatus === 400, `bad request status ${badStatus}`);
check(badMessage.includes("temperature"), `bad request message ${JSON.stringify(badMessage)}`);
check(badType === "invalid_request_error", `bad request type ${badType}`);

console.log(JSON.stringify({ text, streamed, chunks, usage: chat.usage, badStatus, badMessage, failures }));
if (failures.length > 0) {
  console.error("failed:", failures.join("; "));
  process.exit(1);
}
