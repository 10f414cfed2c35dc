// Drive cc-executor with the official MCP TypeScript SDK's WebSocket client.
//
// Run by tests/executor/test_mcp_sdk.py: `node tests/mcp_ts_client.mjs URL SCENARIO`, with
// CCX_MCP_TS_SDK naming the installed package; prints one JSON object on stdout.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const sdk = process.env.CCX_MCP_TS_SDK;
const load = (file) => import(pathToFileURL(join(sdk, "dist/esm", file)).href);
const { Client } = await load("client/index.js");
const { WebSocketClientTransport } = await load("client/websocket.js");

// The SDK validates structured content against the tool's outputSchema, even on isError
// results; a mismatch throws instead of returning the result.
async function call(client, name, args, options) {
  try {
    const result = await client.callTool({ name, arguments: args }, undefined, options);
    return { isError: result.isError ?? false, structuredContent: result.structuredContent ?? null };
  } catch (error) {
    return { thrown: String(error.message), code: error.code ?? null };
  }
}

const scenarios = {
  // Tool failures (no such command, no such run, not a session) and successes, every tool.
  async failures(client) {
    const ok = await call(client, "execute", { argv: ["echo", "hi"] });
    const run = ok.structuredContent.run;
    const calls = {
      ok,
      exit3: await call(client, "execute", { argv: ["sh", "-c", "exit 3"] }),
      not_found: await call(client, "execute", { argv: ["no-such-command-ccx"] }),
      control: await call(client, "control", { run: "nope", action: "pause" }),
      control_ended: await call(client, "control", { run, action: "pause" }),
      status: await call(client, "status", { run: "nope" }),
      read_output: await call(client, "read_output", { run: "nope" }),
      read_ok: await call(client, "read_output", { run }),
      claude_send: await call(client, "claude_send", { run, content: "hi" }),
      claude_session: await call(client, "claude_session", { run: "nope" }),
      claude_close: await call(client, "claude_close", { run: "nope" }),
      claude_interrupt: await call(client, "claude_interrupt", { run: "nope" }),
      claude_permission: await call(client, "claude_permission", { run: "nope", request: "r", behavior: "allow" }),
    };
    return { calls };
  },
  // An abort right after the call is sent: the SDK sends notifications/cancelled at once.
  async abort(client) {
    const controller = new AbortController();
    const pending = call(client, "execute", { argv: ["sleep", "300"] }, { signal: controller.signal });
    controller.abort("changed my mind");
    const aborted = await pending;
    const deadline = Date.now() + 20000;
    let runs = [];
    while (Date.now() < deadline) {
      runs = (await call(client, "list", {})).structuredContent.runs;
      if (runs.length && runs.every((r) => r.state === "completed")) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { aborted, runs };
  },
};

const [url, scenario] = process.argv.slice(2);
const client = new Client({ name: "ccx-ts-test", version: "0" });
await client.connect(new WebSocketClientTransport(new URL(url)));
await client.listTools(); // the SDK caches the output schemas it validates with
const out = await scenarios[scenario](client);
out.server = client.getServerVersion();
await client.close();
console.log(JSON.stringify(out));
