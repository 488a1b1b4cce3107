// Generates HF-style parquet test files with arrow-rs (parquet-wasm) — same 3-level LIST
// encoding as pyarrow/Arrow C++ writes.
import * as arrow from "apache-arrow";
import { Table, writeParquet, WriterPropertiesBuilder, Compression } from "parquet-wasm/node";
import fs from "fs";

const out = process.argv[2] || "/tmp/research";
const Utf8 = arrow.Utf8;
function structType(a, b) {
  return new arrow.Struct([new arrow.Field(a, new Utf8(), true), new arrow.Field(b, new Utf8(), true)]);
}
function listOf(st, elemName) { return new arrow.List(new arrow.Field(elemName, st, true)); }

function write(file, cols, compression, rgSize) {
  const t = new arrow.Table(cols);
  const wt = Table.fromIPCStream(arrow.tableToIPC(t, "stream"));
  let b = new WriterPropertiesBuilder().setCompression(compression);
  if (rgSize) b = b.setMaxRowGroupSize(rgSize);
  const buf = writeParquet(wt, b.build());
  fs.writeFileSync(`${out}/${file}`, buf);
  console.log(file, buf.length, "bytes", t.numRows, "rows");
}

function sharegptRows(n) {
  const ids = [], convs = [], tools = [];
  for (let i = 0; i < n; i++) {
    ids.push(`conv-${i}`);
    if (i % 97 === 5) convs.push(null);            // null list
    else if (i % 97 === 6) convs.push([]);          // empty list
    else {
      const turns = [];
      const k = 2 + (i % 5);
      for (let j = 0; j < k; j++) turns.push({ from: j === 0 && i % 3 === 0 ? "system" : (j % 2 ? "gpt" : "human"),
        value: (j === 3 && i % 11 === 0) ? null : `turn ${j} of row ${i}: héllo wörld ✓ ` + "lorem ipsum ".repeat(i % 7) });
      convs.push(turns);
    }
    tools.push(i % 4 === 0 ? JSON.stringify([{ name: "get_weather", parameters: { city: "string" } }]) : null);
  }
  return { ids, convs, tools };
}

function sharegpt(file, n, elemName, compression, rg) {
  const { ids, convs, tools } = sharegptRows(n);
  write(file, {
    id: arrow.vectorFromArray(ids, new Utf8()),
    conversations: arrow.vectorFromArray(convs, listOf(structType("from", "value"), elemName)),
    tools: arrow.vectorFromArray(tools, new Utf8()),
  }, compression, rg);
}

sharegpt("sharegpt_sample.parquet", 1000, "element", Compression.SNAPPY, 300);
sharegpt("sharegpt_item_zstd.parquet", 1000, "item", Compression.ZSTD, 0);
sharegpt("sharegpt_100k.parquet", 100000, "element", Compression.SNAPPY, 10000);

{ // OpenAI messages, zstd
  const n = 500, msgs = [];
  for (let i = 0; i < n; i++) msgs.push([{ role: "system", content: "You are helpful." },
    { role: "user", content: `question ${i}` }, { role: "assistant", content: `answer ${i}` }]);
  write("messages_sample.parquet", { messages: arrow.vectorFromArray(msgs, listOf(structType("role", "content"), "element")) }, Compression.ZSTD, 200);
}
{ // plain text, zstd
  const n = 500, text = [], ids = [];
  for (let i = 0; i < n; i++) { text.push(i === 7 ? null : `document ${i}\nsome text`); ids.push(BigInt(i)); }
  write("text_sample.parquet", { id: arrow.vectorFromArray(ids, new arrow.Int64()), text: arrow.vectorFromArray(text, new Utf8()) }, Compression.ZSTD, 0);
}

{ // one big row group (arrow-rs default max 1M rows) to check streaming memory
  const { ids, convs, tools } = sharegptRows(100000);
  write("sharegpt_100k_1rg.parquet", {
    id: arrow.vectorFromArray(ids, new Utf8()),
    conversations: arrow.vectorFromArray(convs, listOf(structType("from", "value"), "element")),
    tools: arrow.vectorFromArray(tools, new Utf8()),
  }, Compression.ZSTD, 0);
}
{ // assorted types, data page v2, gzip, no dictionary
  const n = 50;
  const i32 = [], f64 = [], bools = [], tags = [], meta = [], nested = [], ts = [], bin = [];
  for (let i = 0; i < n; i++) {
    i32.push(i % 10 === 3 ? null : i * 3);
    f64.push(i / 4);
    bools.push(i % 2 === 0);
    tags.push(i % 7 === 0 ? null : ["a" + i, "b" + i]);
    meta.push(i % 9 === 0 ? null : { source: "src" + i, score: i * 1.5 });
    nested.push([[i, i + 1], [], [i + 2]]);
    ts.push(new Date(Date.UTC(2024, 0, 1) + i * 1000));
    bin.push(new Uint8Array([0, 255, i]));
  }
  const t = {
    i32: arrow.vectorFromArray(i32, new arrow.Int32()),
    f64: arrow.vectorFromArray(f64, new arrow.Float64()),
    flag: arrow.vectorFromArray(bools, new arrow.Bool()),
    tags: arrow.vectorFromArray(tags, new arrow.List(new arrow.Field("element", new Utf8(), true))),
    meta: arrow.vectorFromArray(meta, new arrow.Struct([new arrow.Field("source", new Utf8(), true), new arrow.Field("score", new arrow.Float64(), true)])),
    nested: arrow.vectorFromArray(nested, new arrow.List(new arrow.Field("element", new arrow.List(new arrow.Field("element", new arrow.Int32(), true)), true))),
    ts: arrow.vectorFromArray(ts, new arrow.TimestampMillisecond()),
    bin: arrow.vectorFromArray(bin, new arrow.Binary()),
  };
  const wt = Table.fromIPCStream(arrow.tableToIPC(new arrow.Table(t), "stream"));
  const props = new WriterPropertiesBuilder().setCompression(Compression.GZIP).setDictionaryEnabled(false).setWriterVersion(1).build();
  const buf = writeParquet(wt, props);
  fs.writeFileSync(`${out}/types_sample.parquet`, buf);
  console.log("types_sample.parquet", buf.length);
}
