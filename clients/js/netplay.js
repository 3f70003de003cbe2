// netplay for the browser: the lobby protocol, the WebRTC full mesh and wire format v2.
// An ES module with no build step: import it straight from a page.
//
//   import { Mesh } from "./netplay.js";
//   const mesh = await new Mesh({ lobbyUrl: "ws://127.0.0.1:8765/ws", name: "ann" }).open();
//   await mesh.quickMatch({ game: "squares", gameVersion: "1" });
//   mesh.on("peerJoined", ({ peer }) => ...);
//   mesh.sendState({ x: 1, y: 2 });  mesh.sendEvent({ t: "hit" });
//   const view = mesh.interpolated();
//
// docs/browser.md is the guide; docs/wire.md and docs/lobby.md are the protocols.

export { Mesh, DEFAULT_CHANNELS, offersTo, now } from "./src/mesh.js";
export { DataPlane } from "./src/dataplane.js";
export { LobbyClient, LobbyClosed, LobbyError, PROTOCOL_VERSION } from "./src/lobby.js";
export {
  Float64, ProtocolError, WIRE_VERSION, f64, packBody, packHead, packTail, packRecord,
  unpackBody, unpackDatagram,
} from "./src/wire.js";
export {
  ClockSync, DeltaDecoder, DeltaEncoder, InterpolationBuffer, copyState, diff, lerpState, patch,
} from "./src/state.js";
export { Inbound, Outbound, laneSpecs } from "./src/lanes.js";
