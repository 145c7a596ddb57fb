// partysocket against examples/chat while the room moves there and back:
// one client at each of two PoPs sends without pause; the test (Go) moves
// the room when this prints "sending" and again when it prints "reopened".
// Every message sent must be in the history exactly once, each sender's in
// its order, both clients must have seen the same order, and each must
// have seen one 4001 per move.
//
//   node partysocket_move.mjs HOST1:PORT HOST2:PORT ROOM
import PartySocket from "partysocket";
import WS from "ws";

const [hostA, hostB, room] = process.argv.slice(2);
const fail = (msg) => { console.error("FAIL " + msg); process.exit(1); };
setTimeout(() => fail("timed out"), 60000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (cond, what) => {
  for (let i = 0; !cond(); i++) {
    if (i > 1500) fail("waited 30 s for " + what);
    await sleep(20);
  }
};

function client(host, name) {
  const c = { name, got: [], codes: [], opens: 0, sent: [] };
  c.ws = new PartySocket({ host, room, basePath: "chat/" + room, WebSocket: WS, minReconnectionDelay: 10, maxReconnectionDelay: 200 });
  c.ws.addEventListener("message", (e) => c.got.push(String(e.data)));
  c.ws.addEventListener("close", (e) => c.codes.push(e.code));
  c.ws.addEventListener("open", () => c.opens++);
  return c;
}

const per = 40; // 2 × 40 messages: the history keeps 100
const a = client(hostA, "a");
await until(() => a.opens === 1, "a to open");
const b = client(hostB, "b");
await until(() => b.opens === 1, "b to open");
await sleep(200); // both connect events ran at the owner (A's PoP)
console.log("sending");
let reopened = false;
async function send(c) {
  for (let i = 0; i < per; i++) {
    // Before messages 15 and 30, wait for the move that should be under
    // way by then, so that both happen while both send.
    if (i === 15) await until(() => a.codes.length >= 1 && b.codes.length >= 1, "the first move");
    if (i === 30) await until(() => a.codes.length >= 2 && b.codes.length >= 2, "the second move");
    const m = c.name + "-" + String(i).padStart(2, "0");
    c.ws.send(m); // queued by partysocket while it reconnects
    c.sent.push(m);
    await sleep(i % 15 < 10 ? 2 : 15);
  }
}
const watch = (async () => {
  await until(() => a.opens >= 2 && b.opens >= 2, "both to reopen after the first move");
  reopened = true;
  console.log("reopened");
})();
await Promise.all([send(a), send(b), watch]);
const all = [...a.sent, ...b.sent];
const dedupe = (got) => [...new Set(got)];
await until(() => all.every((m) => a.got.includes(m) && b.got.includes(m)), "every message at both clients");
const res = await fetch("http://" + hostA + "/chat/" + room + "/history");
const h = await res.json();
for (const m of all) {
  const n = h.filter((x) => x === m).length;
  if (n !== 1) fail(`${m} is in the history ${n} times: ${h}`);
}
if (h.length !== all.length) fail(`history has ${h.length} messages, ${all.length} were sent: ${h}`);
for (const p of ["a", "b"]) {
  const mine = h.filter((x) => x.startsWith(p + "-"));
  if (mine.join() !== [...mine].sort().join()) fail(`${p}'s messages out of order: ${mine}`);
}
for (const c of [a, b]) {
  if (dedupe(c.got).join() !== h.join()) fail(`${c.name} saw ${dedupe(c.got)}\nhistory ${h}`);
  if (c.codes.join() !== "4001,4001") fail(`${c.name}: close codes ${c.codes}, want one 4001 per move`);
}
a.ws.close();
b.ws.close();
console.log(`ok ${all.length} messages, ${reopened ? "moved twice" : ""}`);
process.exit(0);
