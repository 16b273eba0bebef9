// The page's script (bundled by esbuild in turbo.test.mjs): Turbo, an
// @anycable/web cable (URL and JWT from <meta name="cable-url|cable-token">,
// extended protocol), and @anycable/turbo-stream's <turbo-cable-stream-source>.
import "@hotwired/turbo";
import { createCable } from "@anycable/web";
import { start } from "@anycable/turbo-stream";

const cable = createCable({ protocol: "actioncable-v1-ext-json", logLevel: "warn" });
// Frames received, for the test to synchronise on protocol answers.
window.__wire = [];
cable.transport.on("data", (d) => { try { window.__wire.push(JSON.parse(d)); } catch {} });
window.cable = cable;
start(cable);
