/** gsw's native primitives for TypeScript: channels, waitsets, sockets, batch datagram I/O. */
export {
  GswError,
  LIBRARY_FILE,
  libraryCandidates,
  monotonicNs,
  native,
  nativePath,
  realtimeNs,
  takeSignals,
  uid,
  watchSignals,
} from "./library.ts";
export { NativeObject, OwnedFd } from "./handle.ts";
export {
  type ChannelSpec,
  RECORD,
  RECORD_HEADER_LEN,
  type Sample,
  type SegmentFds,
  SegmentReader,
  SegmentWriter,
} from "./segment.ts";
export { HANGUP, READABLE, type Ready, Waitset, WRITABLE } from "./waitset.ts";
export {
  type BroadcastChannelSpec,
  BroadcastReader,
  BroadcastWriter,
  DEFAULT_RING_SIZE,
  dieWithParent,
  dupFd,
  MAX_RING_SIZE,
  MIN_RING_SIZE,
  newEventFd,
  NO_PACKET,
  pidfdOpen,
  RING_RECORD,
  type RingRead,
  signalEventFd,
} from "./broadcast.ts";
export {
  closeFd,
  DATAGRAM,
  MAX_FDS,
  type PeerCred,
  prepareRunDir,
  SEQPACKET,
  UnixConnection,
  UnixListener,
  unlinkPath,
} from "./socket.ts";
export {
  Batch,
  type DatagramMeta,
  datagramMeta,
  FLAG_TRUNCATED,
  MAX_DATAGRAM,
  META_LEN,
  type UdpOptions,
  UdpSocket,
} from "./udp.ts";
export {
  type ExtractField,
  Extractor,
  Fanout,
  LogQueue,
  type LogQueueStats,
  NONE,
  type PumpResult,
} from "./pipeline.ts";
export {
  decodeRawPacket,
  encodeRawPacket,
  FLAG_MALFORMED,
  MqttSource,
  type MqttSourceOptions,
  type MqttSourceStats,
  type MqttWatch,
  RAW_HEADER_LEN,
  type RawPacketMessage,
  WANT_READ,
  WANT_WRITE,
} from "./mqtt.ts";
export {
  type CrcKind,
  encodeFrame,
  FLAG_BAD_CRC,
  FLAG_UNFRAMED,
  type FramingKind,
  type FramingOptions,
  framingOptions,
  type StreamEndpoint,
  StreamOut,
  StreamSource,
  type StreamSourceStats,
} from "./stream.ts";
