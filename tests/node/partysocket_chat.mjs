// partysocket (PartyKit's reconnecting WebSocket) against examples/chat:
// one client at each of two PoPs; each sends three messages; both must
// receive all six, in the same order.
//
//   node partysocket_chat.mjs HOST1:PORT HOST2:PORT ROOM
import PartySocket from "partysocket";
import WS from "ws";

const [hostA, hostB, room] = process.argv.slice(2);
const fail = (msg) => { console.error("FAIL " + msg); process.exit(1); };
setTimeout(() => fail("timed out"), 60000);

function client(host) {
  const got = [];
  const ws = new PartySocket({ host, room, basePath: "chat/" + room, WebSocket: WS });
  ws.addEventListener("message", (e) => got.push(String(e.data)));
  const open = new Promise((resolve) => ws.addEventListener("open", resolve, { once: true }));
  return { ws, got, open };
}

const until = async (cond) => { while (!cond()) await new Promise((r) => setTimeout(r, 20)); };

const a = client(hostA);
await a.open;
a.ws.send("ps-a0");
await until(() => a.got.includes("ps-a0")); // the room lives at A's PoP now
const b = client(hostB);
await b.open;
await until(() => b.got.includes("ps-a0"));
for (let i = 1; i <= 3; i++) { a.ws.send("ps-a" + i); b.ws.send("ps-b" + i); }
const want = ["ps-a1", "ps-a2", "ps-a3", "ps-b1", "ps-b2", "ps-b3"];
await until(() => want.every((m) => a.got.includes(m) && b.got.includes(m)));
const tail = (got) => got.slice(got.indexOf("ps-a0")).join(",");
if (tail(a.got) !== tail(b.got)) fail(`orders differ: ${tail(a.got)} / ${tail(b.got)}`);
a.ws.close();
b.ws.close();
console.log("ok " + tail(a.got));
process.exit(0);
